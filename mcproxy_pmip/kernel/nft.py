"""A small ctypes binding of libnftables: nft command batches as atomic transactions.

``libnftables.so.1`` (Debian package libnftables1) is the library behind the
``nft`` command. :class:`NftContext` holds one ``struct nft_ctx`` for the
daemon's whole life; :meth:`NftContext.run` hands a batch of nft commands (the
``nft -f`` syntax, one command a line) to ``nft_run_cmd_from_buffer``, which
sends it to the kernel as ONE nf_tables transaction: every command is applied,
or none is. Output and error text are captured in the context's buffers
instead of the process's stdout/stderr; :meth:`NftContext.run_json` lists with
JSON output (``nft -j``).

The context's netfilter socket is opened by ``nft_ctx_new`` and keeps the
network namespace of the calling thread at that moment; interface names in
commands (``device "eth0"``) are resolved to indexes by each call, in the
calling thread's namespace. Failures raise ``KernelError("nft", errno,
<nft's error text>)``; the errno is taken from nft's text (the library's
``errno`` is not reliable), EINVAL for errors nft found before the kernel saw
the batch.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import re
from collections.abc import Iterable

from mcproxy_pmip.errors import KernelError, PlaneUnavailable
from mcproxy_pmip.kernel.statefile import process_alive  # noqa: F401 (the nftables plane's owner check)

log = logging.getLogger(__name__)

LIBRARY = "libnftables.so.1"
DEBIAN_PACKAGE = "libnftables1"

# nftables/libnftables.h
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_OUTPUT_TERSE = 1 << 11

#: between the commands of a batch, which nft gets as one line
SEPARATOR = "; "

_STRERROR = {os.strerror(number): number for number in errno.errorcode}
_KERNEL_REFUSAL = re.compile(r"Could not process rule: ([^\n]+)")


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        raise PlaneUnavailable("nftables", f"{LIBRARY} cannot be loaded ({exc})",
                               f"install the Debian package {DEBIAN_PACKAGE}") from exc
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_free.restype = None
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_output_set_flags.restype = None
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


def error_number(text: str) -> int:
    """The errno behind nft's error text: the kernel's refusal, or EINVAL (rejected before the kernel)."""
    match = _KERNEL_REFUSAL.search(text)
    if match is not None:
        return _STRERROR.get(match.group(1).strip(), errno.EINVAL)
    if "No such file or directory" in text:
        return errno.ENOENT
    return errno.EINVAL


def explain(error: str, commands: list[str]) -> str:
    """nft's error text with each error's command instead of the echoed batch and carets.

    The batch is given to nft as one line (``"; "`` between commands): nft
    echoes only the first line of a buffer, so the caret columns of a
    one-line batch are what tells which command failed.
    """
    starts, position = [], 0
    for command in commands:
        starts.append(position)
        position += len(command) + len(SEPARATOR)
    found, message = [], None
    for line in error.splitlines():
        if line.startswith("Error:"):
            message = line[len("Error:"):].strip()
        elif message is not None and line.strip() and set(line.strip()) <= set("^~"):
            column = len(line) - len(line.lstrip())
            index = max(i for i, start in enumerate(starts) if start <= column) if starts else None
            found.append(f"{message}: {commands[index]}" if index is not None else message)
            message = None
    return "\n".join(found) if found else error


def json_documents(text: str) -> list[dict]:
    """Every JSON document in ``text`` (nft prints one per list command)."""
    decoder = json.JSONDecoder()
    documents = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return documents
        document, position = decoder.raw_decode(text, position)
        documents.append(document)


class NftContext:
    """One libnftables context, reused for every batch; ``close`` frees it."""

    def __init__(self) -> None:
        self._lib = _load()
        handle = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not handle:
            raise KernelError("nft_ctx_new", errno.ENOMEM, "libnftables could not make a context")
        self._ctx: int | None = handle
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            if getattr(self._lib, name)(handle) != 0:
                self.close()
                raise KernelError(name, errno.ENOMEM, "libnftables could not buffer its output")
        self._base_flags = self._lib.nft_ctx_output_get_flags(handle)

    def __enter__(self) -> "NftContext":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def run(self, commands: str | Iterable[str], *, terse: bool = False) -> str:
        """Apply ``commands`` as one transaction; nft's output text (list commands)."""
        return self._run(commands, NFT_CTX_OUTPUT_TERSE if terse else 0)

    def run_json(self, command: str) -> list[dict]:
        """One list command with JSON output: the items of its ``nftables`` array, metainfo left out.

        libnftables 1.0.6 fails a buffer of two list commands of different
        families ("did you mean table ... in family ip6?"): list one at a time.
        """
        items = []
        for document in json_documents(self._run(command, NFT_CTX_OUTPUT_JSON)):
            items.extend(item for item in document.get("nftables", ()) if "metainfo" not in item)
        return items

    def _run(self, commands: str | Iterable[str], flags: int) -> str:
        if self._ctx is None:
            raise KernelError("nft", errno.EBADF, "the nft context is closed")
        lines = [commands] if isinstance(commands, str) else list(commands)
        text = SEPARATOR.join(lines)
        self._lib.nft_ctx_output_set_flags(self._ctx, self._base_flags | flags)
        try:
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            output = self._read(self._lib.nft_ctx_get_output_buffer)
            error = self._read(self._lib.nft_ctx_get_error_buffer)
        finally:
            self._lib.nft_ctx_output_set_flags(self._ctx, self._base_flags)
        if status != 0:
            detail = error.strip() or f"nft_run_cmd_from_buffer returned {status}"
            raise KernelError("nft", error_number(detail), explain(detail, lines))
        if error.strip():
            log.warning("nft_warning text=%r", error.strip())
        return output

    def _read(self, getter) -> str:
        raw = getter(self._ctx)
        return raw.decode(errors="replace") if raw else ""

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

