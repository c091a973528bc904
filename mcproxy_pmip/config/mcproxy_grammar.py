"""Lexer and parser of mcproxy's configuration grammar, into the located ``RawConfig``.

The language (mcproxy's reference configuration, EBNF-ish)::

    config      = { command ";" } ;
    command     = "protocol" NAME | "disable"
                | "pinstance" NAME [ "(" NUMBER ")" ] ":" { IF } "==>" { IF }
                | "pinstance" NAME ( "upstream" | "downstream" ) ( IF | "*" ) ( "in" | "out" )
                      ( ( "whitelist" | "blacklist" ) table_expr
                      | "rulematching" ( "all" | "first" | "mutex" NUMBER ) )
                | "table" NAME "{" { rule_box } "}" ;
    table_expr  = "table" NAME | "table" "{" { rule_box } "}" ;
    rule_box    = [ IF | "*" ] "(" part "|" part ")"
                | "(" "table" ( NAME | "{" { rule_box } "}" ) ")"
                | "table" NAME ;                             (* our shorthand *)
    part        = "*" | ADDRESS | ADDRESS "-" ADDRESS | ADDRESS "/" LENGTH ;

Keywords are case-insensitive, ``#`` starts a comment to the end of the line,
a command may span lines, and a name may be quoted (``"eth0"``; a quoted name is
never a keyword). Syntax errors are collected (one per command; the parser
resumes after the next ``;``) so that one run reports every problem.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mcproxy_pmip.errors import ConfigProblem
from mcproxy_pmip.config.syntax import (Loc, Located, RawConfig, RawFilter, RawInstance,
                                        RawMatch, RawRule, RawRuleMatching, RawTable,
                                        RawTableRef)

_PUNCTUATION = {";": "SEMI", "{": "LBRACE", "}": "RBRACE", "(": "LPAREN", ")": "RPAREN",
                "|": "PIPE", "*": "STAR", ":": "COLON"}
_TOKEN_RE = re.compile(r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<quoted>"[^"\n]*"?)
  | (?P<arrow>==>)
  | (?P<punct>[;{}()|*])
  | (?P<word>[^\s;{}()|*"\#=]+)
  | (?P<bad>.)
""", re.VERBOSE)
_KEYWORDS = frozenset({"protocol", "disable", "pinstance", "table", "upstream", "downstream",
                       "in", "out", "whitelist", "blacklist", "rulematching", "all", "first",
                       "mutex"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str            # WORD, ARROW, SEMI, LBRACE, RBRACE, LPAREN, RPAREN, PIPE, STAR, COLON, EOF
    text: str
    line: int
    column: int
    quoted: bool = False

    def keyword(self) -> str | None:
        """The lower-cased keyword this token spells, None for names and punctuation."""
        if self.kind != "WORD" or self.quoted:
            return None
        lowered = self.text.lower()
        return lowered if lowered in _KEYWORDS else None

    def describe(self) -> str:
        if self.kind == "EOF":
            return "end of file"
        return f"'{self.text}'"


def _looks_like_address(word: str) -> bool:
    """True if ``word`` is an IPv6 address, prefix or range whose colons must stay in it."""
    for piece in re.split(r"[-/]", word):
        try:
            ipaddress.IPv6Address(piece)
        except ValueError:
            continue
        return True
    return False


def tokenize(text: str, file: str, line: int = 1, column: int = 1,
             problems: list[ConfigProblem] | None = None) -> list[Token]:
    """Split ``text`` into tokens; lexical problems are appended to ``problems``."""
    found: list[ConfigProblem] = problems if problems is not None else []
    tokens: list[Token] = []
    line_start = -(column - 1)
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        value = match.group()
        col = match.start() - line_start + 1
        if kind == "newline":
            line += 1
            line_start = match.end()
        elif kind == "quoted":
            if len(value) < 2 or not value.endswith('"'):
                found.append(ConfigProblem(file, line, col, "unterminated quoted name: expected '\"'"))
                tokens.append(Token("WORD", value[1:], line, col, quoted=True))
            else:
                tokens.append(Token("WORD", value[1:-1], line, col, quoted=True))
        elif kind == "arrow":
            tokens.append(Token("ARROW", value, line, col))
        elif kind == "punct":
            tokens.append(Token(_PUNCTUATION[value], value, line, col))
        elif kind == "word":
            tokens.extend(_split_colons(value, line, col))
        elif kind == "bad":
            found.append(ConfigProblem(file, line, col, f"unexpected character {value!r}"))
    end_col = len(text) - line_start + 1
    tokens.append(Token("EOF", "", line, end_col))
    return tokens


def _split_colons(word: str, line: int, column: int) -> list[Token]:
    """``name:`` and ``a:b`` carry mcproxy's ':' inside a word; IPv6 text keeps its colons."""
    if ":" not in word or _looks_like_address(word):
        return [Token("WORD", word, line, column)]
    tokens: list[Token] = []
    offset = 0
    for index, piece in enumerate(word.split(":")):
        if index > 0:
            tokens.append(Token("COLON", ":", line, column + offset - 1))
        if piece:
            tokens.append(Token("WORD", piece, line, column + offset))
        offset += len(piece) + 1
    return tokens


class _SyntaxProblem(Exception):
    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Parser:
    """Recursive descent over the token list; one ``RawConfig`` per source."""

    def __init__(self, tokens: list[Token], raw: RawConfig) -> None:
        self.tokens = tokens
        self.pos = 0
        self.raw = raw

    # -- token helpers -------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        if token.kind != "EOF":
            self.pos += 1
        return token

    def loc(self, token: Token) -> Loc:
        return Loc(self.raw.file, token.line, token.column)

    def fail(self, expected: str, token: Token | None = None) -> _SyntaxProblem:
        token = token if token is not None else self.peek()
        return _SyntaxProblem(self.loc(token).problem(f"expected {expected}, found {token.describe()}"))

    def expect(self, kind: str, expected: str) -> Token:
        if self.peek().kind != kind:
            raise self.fail(expected)
        return self.advance()

    def expect_keyword(self, choices: tuple[str, ...], expected: str) -> Located:
        token = self.peek()
        if token.keyword() not in choices:
            raise self.fail(expected)
        self.advance()
        return Located(token.keyword(), self.loc(token))

    def expect_name(self, expected: str) -> Located:
        token = self.expect("WORD", expected)
        return Located(token.text, self.loc(token))

    # -- commands ------------------------------------------------------------------
    def parse(self) -> RawConfig:
        while self.peek().kind != "EOF":
            if self.peek().kind == "SEMI":
                self.advance()
                continue
            try:
                self.command()
            except _SyntaxProblem as error:
                self.raw.problems.append(error.problem)
                self.recover()
        return self.raw

    def recover(self) -> None:
        """Skip to just after the next ';', or to a command that starts a line (a missing ';')."""
        current = self.peek()
        if self.pos > 0 and self.tokens[self.pos - 1].line != current.line and self.starts_command(current):
            return
        while self.peek().kind not in ("SEMI", "EOF"):
            token = self.advance()
            following = self.peek()
            if following.line != token.line and self.starts_command(following):
                return
        self.advance()

    def starts_command(self, token: Token) -> bool:
        keyword = token.keyword()
        if keyword in ("protocol", "pinstance", "disable"):
            return True
        return (keyword == "table" and self.peek(1).kind == "WORD"
                and self.peek(2).kind == "LBRACE")

    def command(self) -> None:
        token = self.peek()
        keyword = token.keyword()
        if keyword == "protocol":
            self.advance()
            self.raw.protocols.append(self.expect_name("a protocol name (IGMPv1..3, MLDv1..2)"))
            self.expect("SEMI", "';' after the protocol name")
        elif keyword == "disable":
            self.advance()
            self.raw.disabled = self.loc(token)
            self.expect("SEMI", "';' after 'disable'")
        elif keyword == "pinstance":
            self.advance()
            self.pinstance(token)
        elif keyword == "table":
            self.advance()
            name = self.expect_name("a table name after 'table'")
            self.expect("LBRACE", "'{' after the table name")
            table = RawTable(name, self.rule_boxes(), self.loc(token))
            self.expect("SEMI", "';' after the table's '}'")
            self.raw.tables.append(table)
        else:
            raise self.fail("'protocol', 'pinstance', 'table' or 'disable'")

    def pinstance(self, start: Token) -> None:
        name = self.expect_name("an instance name after 'pinstance'")
        following = self.peek()
        if following.kind in ("LPAREN", "COLON"):
            self.instance_definition(name, start)
        elif following.keyword() in ("upstream", "downstream"):
            self.binding(name, start)
        else:
            raise self.fail("':', '(TABLE):', 'upstream' or 'downstream' after the instance name")

    def instance_definition(self, name: Located, start: Token) -> None:
        instance = RawInstance(name=name, loc=self.loc(start))
        if self.peek().kind == "LPAREN":
            self.advance()
            number = self.expect("WORD", "a routing table number inside '(...)'")
            instance.table = Located(number.text, self.loc(number))
            self.expect("RPAREN", "')' after the routing table number")
        self.expect("COLON", "':' after the instance name")
        instance.upstreams.extend(self.interface_names())
        self.expect("ARROW", "'==>' after the upstream list")
        instance.downstreams.extend(self.interface_names())
        self.expect("SEMI", "';' after the downstream list")
        self.raw.instances.append(instance)

    def interface_names(self) -> list[Located]:
        """Names up to the next punctuation or keyword (quote an interface named like a keyword)."""
        names: list[Located] = []
        while self.peek().kind == "WORD" and self.peek().keyword() is None:
            token = self.advance()
            names.append(Located(token.text, self.loc(token)))
        return names

    def binding(self, instance: Located, start: Token) -> None:
        role = self.expect_keyword(("upstream", "downstream"), "'upstream' or 'downstream'")
        token = self.peek()
        if token.kind == "STAR":
            self.advance()
            interface = Located("*", self.loc(token))
        else:
            interface = self.expect_name("an interface name or '*'")
        direction = self.expect_keyword(("in", "out"), "'in' or 'out'")
        action = self.peek()
        if action.keyword() in ("whitelist", "blacklist"):
            self.advance()
            mode = Located(action.keyword(), self.loc(action))
            table = self.table_expression()
            self.expect("SEMI", "';' after the filter table")
            self.raw.filters.append(RawFilter(instance, role, interface, direction, mode, table,
                                              self.loc(start)))
        elif action.keyword() == "rulematching":
            self.advance()
            kind = self.expect_keyword(("all", "first", "mutex"), "'all', 'first' or 'mutex'")
            mutex_ms = None
            if kind.value == "mutex":
                mutex_ms = self.expect_name("a timeout in milliseconds after 'mutex'")
            self.expect("SEMI", "';' after the rule matching")
            self.raw.rule_matchings.append(RawRuleMatching(instance, role, direction, kind,
                                                           mutex_ms, self.loc(start)))
        else:
            raise self.fail("'whitelist', 'blacklist' or 'rulematching'")

    def table_expression(self) -> RawTable | RawTableRef:
        token = self.peek()
        if token.keyword() == "table":
            self.advance()
            if self.peek().kind == "LBRACE":
                self.advance()
                return RawTable(None, self.rule_boxes(), self.loc(token))
            name = self.expect_name("a table name or '{' after 'table'")
            return RawTableRef(name, self.loc(token))
        if token.kind == "LBRACE":
            self.advance()
            return RawTable(None, self.rule_boxes(), self.loc(token))
        raise self.fail("'table NAME' or 'table { ... }'")

    # -- rule boxes ----------------------------------------------------------------
    def rule_boxes(self) -> tuple[RawRule | RawTableRef | RawTable, ...]:
        """Rule boxes up to and including the closing '}'."""
        rules: list[RawRule | RawTableRef | RawTable] = []
        while self.peek().kind != "RBRACE":
            if self.peek().kind in ("EOF", "SEMI"):
                raise self.fail("a rule box '(GROUP | SOURCE)' or '}' to close the table")
            rules.append(self.rule_box())
        self.advance()
        return tuple(rules)

    def rule_box(self) -> RawRule | RawTableRef | RawTable:
        start = self.peek()
        if start.keyword() == "table":
            self.advance()
            return self.nested_table(start)
        interface = None
        if start.kind in ("WORD", "STAR") and self.peek(1).kind == "LPAREN":
            self.advance()
            interface = None if start.kind == "STAR" else Located(start.text, self.loc(start))
        elif start.kind != "LPAREN":
            raise self.fail("a rule box '(GROUP | SOURCE)' or '}' to close the table")
        self.expect("LPAREN", "'(' to open the rule box")
        if self.peek().keyword() == "table":
            table_token = self.advance()
            if interface is not None:
                raise _SyntaxProblem(interface.loc.problem(
                    "an interface name cannot precede a nested table: expected '(table ...)'"))
            nested = self.nested_table(table_token)
            self.expect("RPAREN", "')' after the nested table")
            return nested
        group = self.rule_part("the group")
        self.expect("PIPE", "'|' between group and source")
        source = self.rule_part("the source")
        self.expect("RPAREN", "')' to close the rule box")
        return RawRule(interface, group, source, self.loc(start))

    def nested_table(self, start: Token) -> RawTableRef | RawTable:
        if self.peek().kind == "LBRACE":
            self.advance()
            return RawTable(None, self.rule_boxes(), self.loc(start))
        name = self.expect_name("a table name or '{' after 'table'")
        return RawTableRef(name, self.loc(start))

    def rule_part(self, what: str) -> RawMatch:
        first = self.peek()
        pieces: list[str] = []
        while self.peek().kind in ("WORD", "STAR", "COLON"):
            pieces.append(self.advance().text)
        if not pieces:
            raise self.fail(f"an address, a range, a prefix or '*' for {what}")
        return RawMatch(" ".join(pieces), self.loc(first))


def parse(text: str, file: str = "<string>") -> RawConfig:
    """Parse mcproxy-grammar ``text``; syntax problems are in the result's ``problems``."""
    raw = RawConfig(file=file)
    tokens = tokenize(text, file, problems=raw.problems)
    return _Parser(tokens, raw).parse()


def parse_rule_box(text: str, loc: Loc, problems: list[ConfigProblem]) -> RawRule | RawTableRef | RawTable | None:
    """Parse one rule box written alone (the YAML format's rule strings) at ``loc``."""
    raw = RawConfig(file=loc.file)
    tokens = tokenize(text, loc.file, loc.line, loc.column, problems)
    parser = _Parser(tokens, raw)
    try:
        rule = parser.rule_box()
        if parser.peek().kind != "EOF":
            raise parser.fail("the end of the rule")
    except _SyntaxProblem as error:
        problems.append(error.problem)
        return None
    return rule
