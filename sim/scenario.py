"""The simulator's scenario: domain size, delays, streams, mobility, protocol timers.

A scenario is a frozen dataclass read from YAML (every key optional, the
embedded default fills the rest) and checked at load; docs/simulation.md
lists the keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from mcproxy_pmip.config.model import PROTOCOLS

MODES = ("static", "plugin", "context", "predictive")
MOBILITY_MODELS = ("random_waypoint", "trace")
OUTAGE_MODELS = ("uniform", "exponential", "samples")


@dataclass(frozen=True, slots=True)
class Delays:
    """One-way delays (s) and the loss probability of control messages on each kind of link."""

    access_interval: float = 0.001
    tunnel_interval: float = 0.002
    lma_processing_interval: float = 0.001
    signalling_interval: float = 0.005
    access_loss: float = 0.0
    tunnel_loss: float = 0.0


@dataclass(frozen=True, slots=True)
class Mobility:
    """``random_waypoint``: each MN picks a random cell of the grid, walks there one cell
    at a time (a dwell drawn in [dwell_min, dwell_max] per cell), pauses, picks again.
    ``trace``: moves read from ``trace_file`` (lines ``time mn cell``)."""

    model: str = "random_waypoint"
    dwell_min_interval: float = 20.0
    dwell_max_interval: float = 60.0
    pause_max_interval: float = 30.0
    trace_file: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    lmas: int = 2
    mags: int = 4
    grid_columns: int = 2
    mns: int = 20
    groups: int = 10
    groups_per_mn: int = 2
    zipf_exponent: float = 1.0
    stream_rate: float = 100.0
    duration_interval: float = 600.0
    #: the MNs' host stacks: protocol (the daemon's names, IGMPv1..MLDv2) -> share of the MNs;
    #: an MLD host joins IPv6 groups, an older-version host stays in its version
    mn_protocols: dict[str, float] = dataclasses.field(default_factory=lambda: {"IGMPv3": 1.0})
    #: the share of the IGMPv3 and MLDv2 MNs that join their groups as (S, G) channels,
    #: INCLUDE {the stream's source}; the others, and every older-version MN (whose
    #: protocol has no source lists), join any-source, EXCLUDE {}
    source_specific_share: float = 0.0
    #: ``uniform`` in [min, max]; ``exponential``: min plus an exponential draw of mean
    #: ``l2_outage_mean_interval``, cut at max; ``samples``: one of ``l2_outage_samples``
    l2_outage_model: str = "uniform"
    l2_outage_min_interval: float = 0.05
    l2_outage_max_interval: float = 0.05
    l2_outage_mean_interval: float = 0.05
    l2_outage_samples: tuple[float, ...] = ()
    prepare_lead_interval: float = 0.1
    #: predictive mode: the old MAG gets the binding detach this long before the link break
    detach_lead_interval: float = 0.0
    #: predictive mode: the new MAG's buffer keeps this much of the MN's data (its plugin's
    #: buffer_interval, docs/handover.md); 0 models a prepare without buffering
    buffer_interval: float = 0.5
    query_interval: float = 125.0
    query_response_interval: float = 10.0
    robustness: int = 2
    unsolicited_report_interval: float = 1.0
    delays: Delays = Delays()
    mobility: Mobility = Mobility()


#: the nested sections of a scenario and their classes
_SECTIONS = {"delays": Delays, "mobility": Mobility}


def default_scenario() -> Scenario:
    """2 LMAs, 4 MAGs on a 2x2 grid, 20 MNs, 10 groups, 10 simulated minutes."""
    return Scenario()


def check(scenario: Scenario) -> Scenario:
    problems = []
    if scenario.lmas < 1 or scenario.mags < 1 or scenario.mns < 1 or scenario.groups < 1:
        problems.append("lmas, mags, mns and groups must be at least 1")
    if scenario.mags % scenario.grid_columns:
        problems.append("mags must be a multiple of grid_columns (one MAG per cell)")
    if not 1 <= scenario.groups_per_mn <= scenario.groups:
        problems.append("groups_per_mn must be between 1 and groups")
    if not 0 <= scenario.l2_outage_min_interval <= scenario.l2_outage_max_interval:
        problems.append("need 0 <= l2_outage_min_interval <= l2_outage_max_interval")
    if scenario.l2_outage_model not in OUTAGE_MODELS:
        problems.append(f"l2_outage_model must be one of {OUTAGE_MODELS}")
    if scenario.l2_outage_model == "exponential" and not scenario.l2_outage_mean_interval > 0:
        problems.append("l2_outage_mean_interval must be above 0")
    if scenario.l2_outage_model == "samples" and (
            not scenario.l2_outage_samples or min(scenario.l2_outage_samples) < 0):
        problems.append("l2_outage_model samples needs l2_outage_samples, none below 0")
    protocols = scenario.mn_protocols
    if not isinstance(protocols, dict) or not protocols or set(protocols) - set(PROTOCOLS):
        problems.append(f"mn_protocols must map some of {sorted(PROTOCOLS)} to shares")
    elif min(protocols.values()) < 0 or abs(sum(protocols.values()) - 1.0) > 1e-9:
        problems.append("mn_protocols: the shares must be at least 0 and sum to 1")
    if not 0 <= scenario.source_specific_share <= 1:
        problems.append("source_specific_share must be in [0, 1]")
    if not 0 <= scenario.detach_lead_interval <= scenario.prepare_lead_interval:
        problems.append("need 0 <= detach_lead_interval <= prepare_lead_interval")
    if scenario.buffer_interval < 0:
        problems.append("buffer_interval must be at least 0")
    if scenario.query_response_interval >= scenario.query_interval:
        problems.append("query_response_interval must be less than query_interval")
    if scenario.mobility.model not in MOBILITY_MODELS:
        problems.append(f"mobility.model must be one of {MOBILITY_MODELS}")
    if scenario.mobility.model == "trace" and not scenario.mobility.trace_file:
        problems.append("mobility.model trace needs mobility.trace_file")
    if not 0 < scenario.mobility.dwell_min_interval <= scenario.mobility.dwell_max_interval:
        problems.append("need 0 < dwell_min_interval <= dwell_max_interval")
    for name in ("access_loss", "tunnel_loss"):
        if not 0 <= getattr(scenario.delays, name) < 1:
            problems.append(f"delays.{name} must be in [0, 1)")
    if problems:
        raise ValueError("; ".join(problems))
    return scenario


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    values = {}
    for key, value in data.items():
        nested = _SECTIONS.get(key) if cls is Scenario else None
        if nested:
            value = _build(nested, value or {}, f"{where}.{key}")
        values[key] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def with_values(scenario: Scenario, values: dict[str, Any], where: str = "sweep") -> Scenario:
    """``scenario`` with some keys set (``delays.x`` / ``mobility.x`` for the nested ones),
    checked as a loaded scenario is."""
    data = dataclasses.asdict(scenario)
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        if section:
            target = data[section] if section in _SECTIONS else {}
        else:
            target = {} if name in _SECTIONS else data
        if name not in target:
            raise ValueError(f"{where}: unknown key {key!r} (nested keys: delays.x, mobility.x)")
        target[name] = value
    return check(_build(Scenario, data, where))


def load_scenario(text: str, where: str = "scenario") -> Scenario:
    """A scenario from YAML; keys left out keep the default's values."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a mapping is needed")
    return check(_build(Scenario, data, where))
