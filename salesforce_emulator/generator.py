"""Deterministic, vectorised data for the emulated org.

Same seed + same configuration -> byte-identical org, on any machine: every random stream is a numpy
`Generator` seeded from (seed, object, chunk, field) only, so objects and fields do not disturb each other.

Ids: 18 characters = key prefix (3) + pod `Em` + `0` + a 9-digit base-62 counter (digits in ASCII order,
so Ids sort by creation order as strings) + Salesforce's case-safety suffix (`id_suffix`, the real
algorithm: one character per 5-character chunk, a bit per upper-case letter).

Per object (`generate_object`): a skeleton first (creation times, LastModifiedDate, SystemModstamp,
soft deletes) for all rows at once, then the field values chunk by chunk in physical order. Physical
order is (replication key, Id), the order incremental queries read, so their pages are contiguous.
- CreatedDate <= LastModifiedDate <= SystemModstamp <= epoch, spread over three years before `epoch`.
- Bulk-update clusters: about a fifth of the records share their SystemModstamp with hundreds of others
  (half of the clusters to the millisecond, half within one second), one cluster is larger than a
  2,000-record page, and the records around every 20,000th position (the 2,000th for small tables) of
  the ORDER BY SystemModstamp, Id order share one timestamp, so page boundaries fall inside a cluster.
- About 3% soft-deleted (IsDeleted true, SystemModstamp bumped), on objects that have IsDeleted.
- Values fit their types (see `_Chunk.value`): picklists from the describe, multipicklists `a;b`,
  exact decimals, consistent addresses, person names with accents/CJK/apostrophes, text with quotes,
  commas, newlines and emoji, references to generated records of the target object.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .model import Catalog, FieldDef, ModelError, ObjectDef
from .store import arrow_type

ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "Em0"  # instance (2) + reserved (1) characters after the key prefix
COUNTER_DIGITS = 9
CHUNK_ROWS = 262_144
DICTIONARY_TARGETS = 20_000  # references to objects this small are stored dictionary-encoded
DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_YEARS = 3
DELETED_SHARE = 0.03
CLUSTER_SHARE = 0.2
PAGE = 2_000

# Objects whose records are the org's setup: created in the first months of its history.
_SETUP_OBJECTS = frozenset(
    [
        "User",
        "UserRole",
        "Profile",
        "Group",
        "Period",
        "OpportunityStage",
        "Pricebook2",
        "Product2",
        "PricebookEntry",
    ]
)
# Objects whose record count does not follow the scale (their records are a fixed list).
_FIXED_COUNTS = {"OpportunityStage": 10}


# --------------------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------------------


def id_suffix(id15: str) -> str:
    """Salesforce's case-safety suffix of a 15-character Id."""
    out = []
    for start in (0, 5, 10):
        bits = 0
        for offset, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        out.append(SUFFIX_ALPHABET[bits])
    return "".join(out)


def make_id(prefix: str, counter: int) -> str:
    digits = []
    for _ in range(COUNTER_DIGITS):
        counter, rest = divmod(counter, 62)
        digits.append(ID_ALPHABET[rest])
    if counter:
        raise OverflowError("Id counter out of range")
    id15 = prefix + POD + "".join(reversed(digits))
    return id15 + id_suffix(id15)


def id_counter(record_id: str) -> int:
    value = 0
    for char in record_id[6:15]:
        value = value * 62 + ID_ALPHABET.index(char)
    return value


_ALPHABET_BYTES = np.frombuffer(ID_ALPHABET.encode(), dtype=np.uint8)
_SUFFIX_BYTES = np.frombuffer(SUFFIX_ALPHABET.encode(), dtype=np.uint8)


def make_ids(prefix: str, counters: np.ndarray) -> pa.Array:
    """Vectorised `make_id` for an int64 array of counters (a plain Arrow string array)."""
    counters = np.asarray(counters, dtype=np.int64)
    n = len(counters)
    chars = np.empty((n, 18), dtype=np.uint8)
    head = np.frombuffer((prefix + POD).encode(), dtype=np.uint8)
    chars[:, :6] = head
    rest = counters.copy()
    for position in range(14, 5, -1):
        chars[:, position] = _ALPHABET_BYTES[rest % 62]
        rest //= 62
    upper = (chars[:, :15] >= ord("A")) & (chars[:, :15] <= ord("Z"))
    weights = np.array([1, 2, 4, 8, 16], dtype=np.uint8)
    for block in range(3):
        bits = (upper[:, block * 5 : block * 5 + 5] * weights).sum(axis=1)
        chars[:, 15 + block] = _SUFFIX_BYTES[bits]
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


# --------------------------------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------------------------------


def record_counts(catalog: Catalog, scale: float, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Records per object: base count x scale (at least 1), per-object overrides from `counts`."""
    overrides = {name.lower(): int(value) for name, value in (counts or {}).items()}
    unknown = [name for name in (counts or {}) if catalog.get(name) is None]
    if unknown:
        raise ModelError(f"counts name objects this org does not have: {', '.join(sorted(unknown))}")
    if any(value < 0 for value in overrides.values()):
        raise ModelError("record counts cannot be negative")
    result = {}
    for obj in catalog:
        if obj.name.lower() in overrides:
            result[obj.name] = overrides[obj.name.lower()]
        elif not obj.queryable:
            result[obj.name] = 0
        elif obj.name in _FIXED_COUNTS:
            result[obj.name] = _FIXED_COUNTS[obj.name]
        else:
            result[obj.name] = max(1, round(obj.base_count * scale)) if obj.base_count else 0
    if "User" in result and result["User"] < 1 and result:
        result["User"] = 1  # every record needs an owner and a creator
    return result


# --------------------------------------------------------------------------------------------------
# value pools (the org's texture)
# --------------------------------------------------------------------------------------------------

# fmt: off
FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Christopher", "Lisa", "Daniel", "Nancy", "Matthew", "Betty", "Anthony",
    "Sandra", "Mark", "Ashley", "José", "María", "François", "Zoë", "Łukasz", "Søren", "Chloé",
    "Jürgen", "Ngozi", "Priya", "Aarav", "Mei", "Hiroshi", "Yuki", "Oluwaseun", "Siobhán", "Björk",
    "Çağlar", "Renée", "Ana", "Luis", "Fatima", "Omar", "Ingrid", "Dmitri", "Élodie", "Kwame", "Thảo",
    "明", "花子", "Анна", "Μαρία", "Jean-Luc", "Mary Ann", "D'Arcy",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez",
    "Lewis", "Robinson", "Müller", "Schröder", "García", "Núñez", "Nguyễn", "Kowalski", "Ødegaard",
    "Dubois", "Rossi", "Tanaka", "Sato", "Kim", "Okafor", "Mensah", "Singh", "Patel", "Chen", "Wang",
    "Ivanova", "Papadopoulos", "Johansson", "Costa", "Silva", "O'Brien", "D'Angelo",
    "Yılmaz",  # noqa: RUF001
    "van der Berg", "Smith-Jones", "李", "佐藤", "Ó Súilleabháin", "MacDonald",
)
COMPANY_WORDS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
    "Soylent", "Hooli", "Vandelay", "Massive", "Dynamic", "Aperture", "Black", "Mesa", "Oscorp",
    "Gringotts", "Monarch", "Nakatomi", "Pied", "Piper", "Sirius", "Virtucon", "Zorg", "Blue", "Sun",
    "Ollivander", "Northwind", "Contoso", "Fabrikam", "Tailspin", "Woodgrove", "Adventure", "Litware",
    "Proseware", "Alpine", "Trey", "Lucerne", "Margie", "Société Générale", "Müller & Söhne",
    "東京エレクトロン", "São Jorge", "🚀 Rocket", "Björk",
)
# fmt: on
COMPANY_SUFFIXES = (
    " Inc.",
    " LLC",
    " Ltd",
    " GmbH",
    " S.A.",
    " K.K.",
    " & Co.",
    " Corp.",
    " Holdings",
    " Group",
    " Systems",
    " Labs",
    ", Inc.",
    ' Partners "West"',
    " AG",
    " Pty Ltd",
)
# city, state, state code, postal prefix, country, country code, latitude, longitude
CITIES = (
    ("San Francisco", "California", "CA", "941", "United States", "US", 37.7749, -122.4194),
    ("New York", "New York", "NY", "100", "United States", "US", 40.7128, -74.0060),
    ("Austin", "Texas", "TX", "787", "United States", "US", 30.2672, -97.7431),
    ("Seattle", "Washington", "WA", "981", "United States", "US", 47.6062, -122.3321),
    ("Chicago", "Illinois", "IL", "606", "United States", "US", 41.8781, -87.6298),
    ("Boston", "Massachusetts", "MA", "021", "United States", "US", 42.3601, -71.0589),
    ("Toronto", "Ontario", "ON", "M5V", "Canada", "CA", 43.6532, -79.3832),
    ("Montréal", "Québec", "QC", "H2Y", "Canada", "CA", 45.5017, -73.5673),
    ("London", "Greater London", None, "EC1A", "United Kingdom", "GB", 51.5074, -0.1278),
    ("München", "Bayern", "BY", "803", "Germany", "DE", 48.1351, 11.5820),
    ("Paris", "Île-de-France", None, "750", "France", "FR", 48.8566, 2.3522),
    ("東京", "東京都", None, "100-", "Japan", "JP", 35.6762, 139.6503),
    ("São Paulo", "São Paulo", None, "010", "Brazil", "BR", -23.5505, -46.6333),
    ("Sydney", "New South Wales", "NSW", "20", "Australia", "AU", -33.8688, 151.2093),
    ("Bengaluru", "Karnataka", None, "560", "India", "IN", 12.9716, 77.5946),
    ("Madrid", "Comunidad de Madrid", None, "280", "Spain", "ES", 40.4168, -3.7038),
)
STREETS = (
    "Market Street",
    "Main St",
    "Broadway",
    "Mission St, Floor 3",
    'Elm "Old Mill" Road',
    "Rue de Rivoli",
    "Königstraße",
    "Avenida Paulista",
    "George St",
    "Calle de Alcalá",
    "丸の内 1-1",
    "Queen St W",
    "Baker Street",
)
DESCRIPTIONS = (
    "Key account; renewal due in Q3.",
    'Customer asked for a "premium" SLA, pending legal review.',
    "Met at the Berlin summit, interested in analytics, reporting and exports.",
    "Line one of the notes.\nLine two, with a comma.\nLine three.",
    "Prefers email — never call before 10:00.",
    "Großkunde: Ansprechpartner ist die Einkaufsabteilung.",
    "重要な顧客です。年次契約の更新を確認してください。",
    "Happy customer 🎉 — upsell potential 🚀",
    "Backslash \\ and tab\tinside the text.",
    "Quotes: 'single', \"double\", and `back`.",
    "Très bien ; à suivre la semaine prochaine.",
    "Escalated twice in 2024,\nresolved by support engineering.",
)
TITLES = (
    "CEO",
    "CFO",
    "VP, Sales",
    "Director of Engineering",
    "Head of Operations",
    "Account Executive",
    "Procurement Manager",
    "Software Engineer",
    "Directrice générale",
    "Geschäftsführer",
    "部長",
    "Chief Happiness Officer 😊",
)
WORDS = (
    "Alpha",
    "Beta",
    "Gamma",
    "Delta",
    "Nordic",
    "Pacific",
    "Atlantic",
    "Summit",
    "Harbor",
    "Élan",
    "Zürich",
    "Kyōto",
    "Quantum",
    "Horizon",
    "Aurora",
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "corp.example.co.uk")
PROFILE_NAMES = (
    "System Administrator",
    "Standard User",
    "Read Only",
    "Marketing User",
    "Contract Manager",
    "Solution Manager",
    "Sales Manager",
    "Support Agent",
    "Partner Community User",
    "Customer Community User",
    "Analytics Cloud Integration User",
    "Chatter Free User",
    "Minimum Access - Salesforce",
    "Custom: Sales Profile",
    "Custom: Support Profile",
)
ROLE_NAMES = (
    "CEO",
    "CFO",
    "COO",
    "VP, North American Sales",
    "VP, International Sales",
    "VP, Marketing",
    "SVP, Customer Service & Support",
    "Director, Direct Sales",
    "Director, Channel Sales",
    "Marketing Team",
    "Customer Support, North America",
    "Customer Support, International",
    "Eastern Sales Team",
    "Western Sales Team",
    "Installation & Repair Services",
)
PRODUCT_NAMES = (
    "GenWatt Diesel 10kW",
    "GenWatt Diesel 200kW",
    "GenWatt Propane 500kW",
    "Installation: Industrial - High",
    "SLA: Gold",
    "SLA: Silver",
    "SLA: Platinum",
    "Analytics Add-on",
    "Support Hours (10)",
    "Onboarding, Remote",
)
# StageName -> (probability, forecast category name, forecast category, closed, won)
STAGES = {
    "Prospecting": (10, "Pipeline", "Pipeline", False, False),
    "Qualification": (10, "Pipeline", "Pipeline", False, False),
    "Needs Analysis": (20, "Pipeline", "Pipeline", False, False),
    "Value Proposition": (50, "Pipeline", "Pipeline", False, False),
    "Id. Decision Makers": (60, "Pipeline", "Pipeline", False, False),
    "Perception Analysis": (70, "Pipeline", "Pipeline", False, False),
    "Proposal/Price Quote": (75, "Best Case", "BestCase", False, False),
    "Negotiation/Review": (90, "Commit", "Forecast", False, False),
    "Closed Won": (100, "Closed", "Closed", True, True),
    "Closed Lost": (0, "Omitted", "Omitted", True, False),
}


def _ascii_slug(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = "".join(ch for ch in folded if ch.isalnum())
    return slug or "user"


_FIRST = pa.array(FIRST_NAMES)
_LAST = pa.array(LAST_NAMES)
_FIRST_SLUG = pa.array([_ascii_slug(name) for name in FIRST_NAMES])
_LAST_SLUG = pa.array([_ascii_slug(name) for name in LAST_NAMES])


# --------------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------------


@dataclass
class GeneratedTable:
    """An object's generated rows in physical order, as chunks of Arrow arrays keyed by field name."""

    name: str
    count: int
    chunks: list[dict[str, pa.Array]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _rng(*parts: int | str) -> np.random.Generator:
    return np.random.default_rng([p if isinstance(p, int) else _crc(p) for p in parts])


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def generate_org(
    catalog: Catalog, seed: int, counts: dict[str, int], epoch: datetime = DEFAULT_EPOCH
) -> dict[str, GeneratedTable]:
    return {
        obj.name: generate_object(obj, catalog, counts, seed, epoch)
        for obj in catalog
        if counts.get(obj.name, 0) > 0
    }


def generate_object(
    obj: ObjectDef, catalog: Catalog, counts: dict[str, int], seed: int, epoch: datetime = DEFAULT_EPOCH
) -> GeneratedTable:
    generator = _ObjectGenerator(obj, catalog, counts, seed, epoch_ms(epoch))
    table = GeneratedTable(obj.name, generator.n)
    for start in range(0, generator.n, CHUNK_ROWS):
        stop = min(generator.n, start + CHUNK_ROWS)
        table.chunks.append(generator.chunk(start // CHUNK_ROWS, start, stop))
        table.lengths.append(stop - start)
    return table


class _ObjectGenerator:
    def __init__(self, obj: ObjectDef, catalog: Catalog, counts: dict[str, int], seed: int, epoch: int):
        self.obj = obj
        self.catalog = catalog
        self.counts = counts
        self.seed = seed
        self.epoch = epoch
        self.n = counts.get(obj.name, 0)
        self._id_dictionaries: dict[tuple[str, int], pa.Array] = {}
        self._pools: dict[Any, pa.Array] = {}
        self._skeleton()

    def id_dictionary(self, prefix: str, count: int) -> pa.Array:
        """Ids 1..count of an object, shared by every chunk's dictionary-encoded references."""
        key = (prefix, count)
        if key not in self._id_dictionaries:
            self._id_dictionaries[key] = make_ids(prefix, np.arange(1, count + 1))
        return self._id_dictionaries[key]

    def pool(self, key: Any, build: Callable[[], Any]) -> pa.Array:
        """A value pool shared by all chunks (so dictionary arrays share one dictionary)."""
        if key not in self._pools:
            values = build()
            self._pools[key] = values if isinstance(values, pa.Array) else pa.array(values)
        return self._pools[key]

    # ---- timestamps, deletes and physical order ----
    def _skeleton(self) -> None:
        n, obj = self.n, self.obj
        rng = _rng(self.seed, obj.name, "skeleton")
        span = int(HISTORY_YEARS * 365.25 * 86_400_000)
        start = self.epoch - span
        if obj.name in _SETUP_OBJECTS:
            created = start + (rng.random(n) * span * 0.1).astype(np.int64)
        else:
            # Orgs grow: more records were created recently.
            created = start + (np.sqrt(rng.random(n)) * span).astype(np.int64)
        created.sort()  # creation order = Id order
        untouched = rng.random(n) < 0.35
        modified = created + ((self.epoch - created) * rng.random(n) ** 2).astype(np.int64)
        modified = np.where(untouched, created, modified)
        bumped = rng.random(n) < 0.15
        stamp = np.where(
            bumped, modified + ((self.epoch - modified) * rng.random(n)).astype(np.int64), modified
        )
        stamp = self._clusters(rng, modified, stamp)
        deleted = np.zeros(n, dtype=bool)
        if obj.has_is_deleted and n:
            deleted = rng.random(n) < DELETED_SHARE
            if not deleted.any() and n >= 20:  # small orgs too show soft deletes through queryAll
                deleted[rng.choice(n, size=max(1, n * 3 // 100), replace=False)] = True
            deleted_at = stamp + ((self.epoch - stamp) * rng.random(n)).astype(np.int64)
            stamp = np.where(deleted, deleted_at, stamp)
        key = obj.replication_key
        sort_key = {"SystemModstamp": stamp, "LastModifiedDate": modified, "CreatedDate": created}.get(key)
        order = np.lexsort((np.arange(n), sort_key)) if sort_key is not None else np.arange(n)
        if key == "SystemModstamp":
            stamp = self._page_boundary_runs(order, stamp, deleted)
            order = np.lexsort((np.arange(n), stamp))
        self.created, self.modified, self.stamp, self.deleted, self.order = (
            created,
            modified,
            stamp,
            deleted,
            order,
        )

    def _clusters(self, rng: np.random.Generator, modified: np.ndarray, stamp: np.ndarray) -> np.ndarray:
        """Bulk updates: clusters of records sharing one SystemModstamp (ms) or one second."""
        n = self.n
        if n < 50:
            return stamp
        members = np.flatnonzero(rng.random(n) < CLUSTER_SHARE)
        size = 400 if n >= 20_000 else max(20, n // 25)
        k = max(1, len(members) // size)
        times = np.sort(self.epoch - (rng.random(k) * (self.epoch - modified.min())).astype(np.int64))
        slot = np.searchsorted(times, modified[members])  # first cluster at or after the last change
        inside = slot < k
        members, slot = members[inside], slot[inside]
        clustered = times[slot]
        # Half of the clusters share the second but not the millisecond.
        spread = (slot % 2 == 1) & (clustered % 1000 < 900)
        jitter = rng.integers(0, 100, len(members))
        clustered = np.where(spread, clustered + jitter, clustered)
        stamp = stamp.copy()
        stamp[members] = np.maximum(clustered, modified[members])
        if n >= 20_000:
            # One bulk update larger than a REST page.
            big_at = self.epoch - 86_400_000
            eligible = np.flatnonzero(modified <= big_at)
            chosen = rng.choice(
                eligible, size=min(len(eligible), 2_100 + int(rng.integers(0, 400))), replace=False
            )
            stamp[chosen] = big_at
        return stamp

    def _page_boundary_runs(self, order: np.ndarray, stamp: np.ndarray, deleted: np.ndarray) -> np.ndarray:
        """Make the records around page boundaries of the (live) SystemModstamp order share one stamp."""
        live = order[~deleted[order]]
        step = PAGE * 10 if len(live) > 40_000 else PAGE
        stamp = stamp.copy()
        for boundary in range(step, len(live) - 1, step):
            window = live[max(0, boundary - 150) : boundary + 150]
            stamp[window] = stamp[window].max()  # moving stamps later keeps CreatedDate <= ... <= stamp
        return stamp

    # ---- values ----
    def chunk(self, index: int, start: int, stop: int) -> dict[str, pa.Array]:
        rows = self.order[start:stop]  # creation indices (0-based) of the physical rows
        ctx = _Chunk(self, index, rows)
        columns: dict[str, pa.Array] = {}
        for f in self.obj.stored_fields():
            columns[f.name] = ctx.value(f)
        return columns


class _Chunk:
    """Values for one physical chunk of an object (rows given by their creation indices)."""

    def __init__(self, gen: _ObjectGenerator, index: int, rows: np.ndarray):
        self.gen = gen
        self.obj = gen.obj
        self.index = index
        self.rows = rows
        self.n = len(rows)
        self.cache: dict[str, Any] = {}

    def rng(self, *parts: str) -> np.random.Generator:
        return _rng(self.gen.seed, self.obj.name, self.index, *parts)

    # ---- helpers ----
    def null_mask(self, f: FieldDef, default: float) -> np.ndarray | None:
        if not f.nillable or f.type == "boolean":
            return None
        fill = f.fill if f.fill is not None else default
        if fill >= 1:
            return None
        return self.rng(f.name, "nulls").random(self.n) >= fill

    def take(self, pool: pa.Array, idx: np.ndarray, mask: np.ndarray | None, dictionary: bool) -> pa.Array:
        if mask is not None and mask.all():
            return pa.nulls(self.n)
        indices = pa.array(idx.astype(np.int32), mask=mask)
        if dictionary:
            return pa.DictionaryArray.from_arrays(indices, pool)
        return pool.take(indices)

    def ids(self, prefix: str, count: int, counters: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        """Ids of records 1..count of an object: dictionary-encoded (one shared dictionary) for small
        targets such as users, plain strings for big ones."""
        if mask is not None and mask.all():
            return pa.nulls(self.n)
        if count <= DICTIONARY_TARGETS:
            indices = pa.array((counters - 1).astype(np.int32), mask=mask)
            return pa.DictionaryArray.from_arrays(indices, self.gen.id_dictionary(prefix, count))
        if mask is None or not mask.any():
            return make_ids(prefix, counters)
        # Only the present Ids are built; null rows take no bytes (offsets repeat).
        present = make_ids(prefix, counters[~mask])
        lengths = np.where(mask, 0, 18).astype(np.int32)
        offsets = np.zeros(self.n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little").tobytes())
        return pa.StringArray.from_buffers(
            self.n, pa.py_buffer(offsets), present.buffers()[2], validity, int(mask.sum())
        )

    def ms_array(self, values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        return pa.array(values.astype("datetime64[ms]"), mask=mask)

    # ---- dispatch ----
    def value(self, f: FieldDef) -> pa.Array:
        n = self.n
        special = _SYSTEM.get(f.name)
        if special is not None:
            return special(self, f)
        if f.dormant and f.nillable:
            return pa.array(np.zeros(n, dtype=bool)) if f.type == "boolean" else pa.nulls(n)
        custom = _OVERRIDES.get((self.obj.name, f.name)) or _BY_NAME.get(f.name)
        if custom is not None:
            result = custom(self, f)
            if result is not None:
                return result
        if f.compound_field_name is not None:
            return self.address_part(f)
        return _BY_TYPE[f.type](self, f)

    # ---- shared row facts ----
    def person(self) -> tuple[np.ndarray, np.ndarray]:
        if "person" not in self.cache:
            rng = self.rng("person")
            self.cache["person"] = (
                rng.integers(0, len(FIRST_NAMES), self.n),
                rng.integers(0, len(LAST_NAMES), self.n),
            )
            self.cache["no_first_name"] = rng.random(self.n) < 0.03
        return self.cache["person"]

    def company(self) -> np.ndarray:
        if "company" not in self.cache:
            rng = self.rng("company")
            self.cache["company"] = np.stack(
                [rng.integers(0, len(COMPANY_WORDS), self.n), rng.integers(0, len(COMPANY_SUFFIXES), self.n)]
            )
        return self.cache["company"]

    def company_names(self) -> pa.Array:
        words, suffixes = self.company()
        word = pa.array(COMPANY_WORDS).take(pa.array(words))
        suffix = pa.array(COMPANY_SUFFIXES).take(pa.array(suffixes))
        return pc.binary_join_element_wise(word, suffix, "")

    def address(self, prefix: str) -> dict[str, np.ndarray]:
        key = f"address:{prefix}"
        if key not in self.cache:
            rng = self.rng("address", prefix)
            base = None
            if prefix.startswith("Shipping") or prefix.startswith("Other"):
                base = self.cache.get(
                    "address:" + ("Billing" if prefix.startswith("Shipping") else "Mailing")
                )
            city = rng.integers(0, len(CITIES), self.n)
            number = rng.integers(1, 9_999, self.n)
            street = rng.integers(0, len(STREETS), self.n)
            suite = np.where(rng.random(self.n) < 0.2, rng.integers(100, 2_000, self.n), 0)
            postal = rng.integers(0, 100, self.n)
            jitter = rng.integers(-20_000, 20_000, (2, self.n))
            missing = rng.random(self.n) < 0.15
            ungeocoded = rng.random(self.n) < 0.3
            if base is not None:
                same = rng.random(self.n) < 0.6
                city = np.where(same, base["city"], city)
                number = np.where(same, base["number"], number)
                street = np.where(same, base["street"], street)
                suite = np.where(same, base["suite"], suite)
                postal = np.where(same, base["postal"], postal)
                missing = np.where(same, base["missing"], missing)
                ungeocoded = np.where(same, base["ungeocoded"], ungeocoded)
            self.cache[key] = dict(
                city=city,
                number=number,
                street=street,
                suite=suite,
                postal=postal,
                jitter=jitter,
                missing=missing,
                ungeocoded=ungeocoded,
            )
        return self.cache[key]

    def address_part(self, f: FieldDef) -> pa.Array:
        compound = self.obj.fields.get(f.compound_field_name or "")
        prefix = (
            compound.name[: -len("Address")] if compound is not None and compound.type == "address" else ""
        )
        part = f.name[len(prefix) :]
        if compound is not None and compound.type == "location":
            part = "Latitude" if "Latitude" in f.name else "Longitude"
        return self.address_value(f, prefix, part)

    def address_value(self, f: FieldDef, prefix: str, part: str) -> pa.Array:
        a = self.address(prefix)
        mask = a["missing"].copy()
        city = a["city"]
        if part == "Street":
            numbers = pa.array(a["number"]).cast(pa.string())
            street = pa.array(STREETS).take(pa.array(street_idx := a["street"]))
            del street_idx
            line = pc.binary_join_element_wise(numbers, street, " ")
            suite_text = pc.binary_join_element_wise(
                pa.scalar("\nSuite "), pa.array(a["suite"]).cast(pa.string()), ""
            )
            line = pc.if_else(
                pa.array(a["suite"] > 0), pc.binary_join_element_wise(line, suite_text, ""), line
            )
            return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), line)
        column = {"City": 0, "State": 1, "StateCode": 2, "Country": 4, "CountryCode": 5}.get(part)
        if column is not None:
            values = [c[column] for c in CITIES]
            if column == 2:
                mask = mask | np.array([v is None for v in values])[city]
            pool = self.gen.pool(("city", column), lambda: ["" if v is None else v for v in values])
            return self.take(pool, city, mask, dictionary=True)
        if part == "PostalCode":
            prefixes = pa.array([c[3] for c in CITIES]).take(pa.array(city))
            digits = pc.utf8_lpad(pa.array(a["postal"]).cast(pa.string()), width=2, padding="0")
            joined = pc.binary_join_element_wise(prefixes, digits, "")
            return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), joined)
        if part in ("Latitude", "Longitude"):
            column = 6 if part == "Latitude" else 7
            base = np.array([c[column] for c in CITIES])[city]
            micro = np.round(base * 1_000_000).astype(np.int64) + a["jitter"][0 if part == "Latitude" else 1]
            return decimal_array(micro, 6, f, mask | a["ungeocoded"])
        if part == "GeocodeAccuracy":
            values = f.picklist or ("Address",)
            idx = self.rng(f.name).integers(0, min(3, len(values)), self.n)
            return self.take(
                self.gen.pool(("picklist", f.name), lambda: values), idx, mask | a["ungeocoded"], True
            )
        return _BY_TYPE[f.type](self, f)

    def reference_targets(self, f: FieldDef) -> list[tuple[str, int]]:
        targets = []
        for name in f.reference_to:
            target = self.gen.catalog.get(name)
            count = self.gen.counts.get(target.name, 0) if target is not None else 0
            if target is not None and count > 0 and target.key_prefix:
                targets.append((target.key_prefix, count))
        return targets


def decimal_array(
    unscaled: np.ndarray, unscaled_scale: int, f: FieldDef, mask: np.ndarray | None
) -> pa.Array:
    """An exact decimal128 array for `f` from integers that carry `unscaled_scale` decimals."""
    precision = max(f.precision, f.scale + 1, 1)
    values = np.asarray(unscaled, dtype=np.int64)
    if f.scale >= unscaled_scale:
        values = values * (10 ** (f.scale - unscaled_scale))
    else:
        values = values // (10 ** (unscaled_scale - f.scale))
    limit = 10 ** min(precision, 18) - 1
    values = np.clip(values, -limit, limit)
    words = np.empty((len(values), 2), dtype=np.int64)
    words[:, 0] = values
    words[:, 1] = values >> 63
    validity = None
    null_count = 0
    if mask is not None and mask.any():
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little").tobytes())
        null_count = int(mask.sum())
    return pa.Array.from_buffers(
        pa.decimal128(precision, f.scale), len(values), [validity, pa.py_buffer(words.tobytes())], null_count
    )


# --------------------------------------------------------------------------------------------------
# value functions: system fields, names, types
# --------------------------------------------------------------------------------------------------

Gen = Callable[[_Chunk, FieldDef], "pa.Array | None"]


def _v_id(c: _Chunk, f: FieldDef) -> pa.Array:
    return make_ids(c.obj.key_prefix or "000", c.rows + 1)


def _v_created(c: _Chunk, f: FieldDef) -> pa.Array:
    return c.ms_array(c.gen.created[c.rows])


def _v_modified(c: _Chunk, f: FieldDef) -> pa.Array:
    return c.ms_array(c.gen.modified[c.rows])


def _v_stamp(c: _Chunk, f: FieldDef) -> pa.Array:
    return c.ms_array(c.gen.stamp[c.rows])


def _v_deleted(c: _Chunk, f: FieldDef) -> pa.Array:
    return pa.array(c.gen.deleted[c.rows])


def _v_audit_user(c: _Chunk, f: FieldDef) -> pa.Array:
    users = c.gen.counts.get("User", 0)
    user = c.gen.catalog.get("User")
    if users <= 0 or user is None or not user.key_prefix:
        return pa.nulls(c.n)
    # Most changes are made by a handful of users (admins, integrations).
    rng = c.rng(f.name)
    busy = rng.integers(1, min(users, 5) + 1, c.n)
    anyone = rng.integers(1, users + 1, c.n)
    return c.ids(user.key_prefix, users, np.where(rng.random(c.n) < 0.6, busy, anyone))


_SYSTEM: dict[str, Gen] = {
    "Id": _v_id,
    "CreatedDate": _v_created,
    "LastModifiedDate": _v_modified,
    "SystemModstamp": _v_stamp,
    "IsDeleted": _v_deleted,
    "CreatedById": _v_audit_user,
    "LastModifiedById": _v_audit_user,
}


def _v_reference(c: _Chunk, f: FieldDef) -> pa.Array:
    targets = c.reference_targets(f)
    if not targets:
        return pa.nulls(c.n)
    default = 0.9 if not f.nillable or f.name in _MAIN_PARENTS else 0.6
    if f.name in ("ParentId", "MasterRecordId") and f.reference_to == (c.obj.name,):
        default = 0.0 if f.name == "MasterRecordId" else 0.2
    mask = c.null_mask(f, default)
    rng = c.rng(f.name)
    if len(targets) == 1:
        prefix, count = targets[0]
        if f.name in ("ParentId",) and f.reference_to == (c.obj.name,):
            # A parent is created before its children.
            counters = (rng.random(c.n) * np.maximum(c.rows, 1)).astype(np.int64) + 1
        else:
            counters = rng.integers(1, count + 1, c.n)
        return c.ids(prefix, count, counters, mask)
    which = rng.integers(0, len(targets), c.n)
    parts = []
    for prefix, count in targets:
        parts.append(make_ids(prefix, rng.integers(1, count + 1, c.n)))
    values = parts[0]
    for index in range(1, len(parts)):
        values = pc.if_else(pa.array(which == index), parts[index], values)
    if mask is not None and mask.any():
        values = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), values)
    return values


_MAIN_PARENTS = frozenset(
    [
        "AccountId",
        "ContactId",
        "OpportunityId",
        "CampaignId",
        "CaseId",
        "CasesId",
        "ItemId",
        "OwnerId",
        "ProfileId",
        "UserId",
        "Pricebook2Id",
        "Product2Id",
        "PricebookEntryId",
        "OpportunityLineItemId",
        "SolutionId",
        "WhatId",
        "WhoId",
    ]
)


def _text_pool(
    c: _Chunk, f: FieldDef, pool: tuple[str, ...], default: float, dictionary: bool = True
) -> pa.Array:
    rng = c.rng(f.name)
    idx = rng.integers(0, len(pool), c.n)
    return c.take(c.gen.pool(pool, lambda: pool), idx, c.null_mask(f, default), dictionary)


def _v_picklist(c: _Chunk, f: FieldDef) -> pa.Array:
    values = f.picklist or ("Alpha", "Beta", "Gamma")
    weights = 1.0 / np.arange(1, len(values) + 1) ** 0.6  # earlier values are more common
    idx = c.rng(f.name).choice(len(values), size=c.n, p=weights / weights.sum())
    return c.take(
        c.gen.pool(("picklist", f.name), lambda: values), idx, c.null_mask(f, 0.85), dictionary=True
    )


def _v_multipicklist(c: _Chunk, f: FieldDef) -> pa.Array:
    values = f.picklist or ("Alpha", "Beta", "Gamma")
    combos = list(values) + [f"{a};{b}" for i, a in enumerate(values) for b in values[i + 1 :]]
    idx = c.rng(f.name).integers(0, len(combos), c.n)
    return c.take(c.gen.pool(("combos", f.name), lambda: combos), idx, c.null_mask(f, 0.7), dictionary=True)


def _v_string(c: _Chunk, f: FieldDef) -> pa.Array:
    def build() -> list[str]:
        values = [f"{WORDS[i % len(WORDS)]} {i * 7919 % 10_007}" for i in range(500)]
        return [v[: f.length] if f.length else v for v in values]

    pool = c.gen.pool(("string", f.length), build)
    idx = c.rng(f.name).integers(0, len(pool), c.n)
    return c.take(pool, idx, c.null_mask(f, 0.7), dictionary=True)


def _masked(values: pa.Array, mask: np.ndarray | None) -> pa.Array:
    if mask is None or not mask.any():
        return values
    if mask.all():
        return pa.nulls(len(values))
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def _v_textarea(c: _Chunk, f: FieldDef) -> pa.Array:
    return _text_pool(c, f, DESCRIPTIONS, 0.4 if f.length > 255 else 0.6)


def _v_email(c: _Chunk, f: FieldDef) -> pa.Array:
    first, last = c.person()
    rng = c.rng(f.name)
    local = pc.binary_join_element_wise(
        _FIRST_SLUG.take(pa.array(first)), _LAST_SLUG.take(pa.array(last)), "."
    )
    tag = pa.array(c.rows % 97).cast(pa.string())
    domain = pa.array(DOMAINS).take(pa.array(rng.integers(0, len(DOMAINS), c.n)))
    address = pc.binary_join_element_wise(local, tag, pa.scalar("@"), domain, "")
    return _masked(address, c.null_mask(f, 0.8))


def _v_phone(c: _Chunk, f: FieldDef) -> pa.Array:
    def build() -> list[str]:
        formats = ["(415) 555-", "+1 212 555 ", "+44 20 7946 ", "+49 89 ", "+81 3-1234-", "555."]
        return [f"{formats[i % len(formats)]}{i * 7907 % 10_000:04d}" for i in range(3_000)]

    pool = c.gen.pool("phone", build)
    idx = c.rng(f.name).integers(0, len(pool), c.n)
    return c.take(pool, idx, c.null_mask(f, 0.7), dictionary=True)


def _v_url(c: _Chunk, f: FieldDef) -> pa.Array:
    words, _ = c.company()
    pool = c.gen.pool("url", lambda: [f"https://www.{_ascii_slug(w)}.example.com" for w in COMPANY_WORDS])
    return c.take(pool, words, c.null_mask(f, 0.6), dictionary=True)


def _v_boolean(c: _Chunk, f: FieldDef) -> pa.Array:
    share = 0.9 if f.name in ("IsActive",) else 0.2
    return pa.array(c.rng(f.name).random(c.n) < share)


def _v_int(c: _Chunk, f: FieldDef) -> pa.Array:
    rng = c.rng(f.name)
    high = {"NumberOfEmployees": 200_000, "DurationInMinutes": 240, "SortOrder": 50}.get(f.name, 1_000)
    values = rng.integers(0, high, c.n)
    if f.name == "NumberOfEmployees":
        values = (rng.pareto(1.2, c.n) * 50 + 1).astype(np.int64).clip(1, 500_000)
    dtype = np.int32 if f.type == "int" else np.int64
    return pa.array(values.astype(dtype), mask=c.null_mask(f, 0.7))


def _v_decimal(c: _Chunk, f: FieldDef) -> pa.Array:
    rng = c.rng(f.name)
    if f.type == "percent":
        cents = rng.integers(0, 10_001, c.n)  # 0.00 .. 100.00
        return decimal_array(cents, 2, f, c.null_mask(f, 0.7))
    if f.type == "currency":
        if f.name == "AnnualRevenue":
            cents = (rng.pareto(1.1, c.n) * 1_000_000 + 50_000).astype(np.int64).clip(0, 10**11) * 100
        else:
            cents = (rng.lognormal(9.5, 1.3, c.n) * 100).astype(np.int64).clip(0, 10**13)
        return decimal_array(cents, 2, f, c.null_mask(f, 0.75))
    whole_digits = max(1, min(f.precision - f.scale, 9))
    scaled = rng.integers(0, 10 ** min(whole_digits, 6), c.n) * 1000 + rng.integers(0, 1000, c.n)
    return decimal_array(scaled, 3, f, c.null_mask(f, 0.7))


def _v_date(c: _Chunk, f: FieldDef) -> pa.Array:
    rng = c.rng(f.name)
    created_days = c.gen.created[c.rows] // 86_400_000
    if f.name in ("Birthdate", "PersonBirthdate"):
        days = rng.integers(-7_300, 12_800, c.n)  # 1950 .. 2005
    else:
        days = created_days + rng.integers(-30, 365, c.n)
        if f.name not in _FUTURE_DATES:
            days = np.minimum(days, c.gen.epoch // 86_400_000)
    return pa.array(days.astype("datetime64[D]"), mask=c.null_mask(f, 0.7))


_FUTURE_DATES = frozenset(
    ["EndDate", "Due_Date__c", "Renewal_Date__c", "ActivityDate", "ServiceDate", "ScheduleDate"]
)


def _v_datetime(c: _Chunk, f: FieldDef) -> pa.Array:
    rng = c.rng(f.name)
    created = c.gen.created[c.rows]
    values = created + ((c.gen.epoch - created) * rng.random(c.n)).astype(np.int64)
    return c.ms_array(values, c.null_mask(f, 0.6))


def _v_time(c: _Chunk, f: FieldDef) -> pa.Array:
    values = c.rng(f.name).integers(0, 86_400, c.n).astype(np.int32) * 1000
    return pa.array(values, type=pa.time32("ms"), mask=c.null_mask(f, 0.7))


def _v_base64(c: _Chunk, f: FieldDef) -> pa.Array:
    pool = ("SGVsbG8sIHdvcmxkIQ==", "UERGLTEuNAolZmFrZQ==", "iVBORw0KGgoAAAANSUhEUg==")
    return _text_pool(c, f, pool, 0.9)


def _v_junction(c: _Chunk, f: FieldDef) -> pa.Array:
    return pa.nulls(c.n)


_BY_TYPE: dict[str, Gen] = {
    "id": _v_id,
    "reference": _v_reference,
    "string": _v_string,
    "encryptedstring": _v_string,
    "textarea": _v_textarea,
    "picklist": _v_picklist,
    "multipicklist": _v_multipicklist,
    "combobox": _v_picklist,
    "email": _v_email,
    "phone": _v_phone,
    "url": _v_url,
    "boolean": _v_boolean,
    "int": _v_int,
    "long": _v_int,
    "double": _v_decimal,
    "currency": _v_decimal,
    "percent": _v_decimal,
    "date": _v_date,
    "datetime": _v_datetime,
    "time": _v_time,
    "base64": _v_base64,
    "anyType": _v_string,
    "junctionidlist": _v_junction,
}


# ---- names ----
def _v_first_name(c: _Chunk, f: FieldDef) -> pa.Array:
    first, _ = c.person()
    return c.take(_FIRST, first, c.cache["no_first_name"] if f.nillable else None, dictionary=True)


def _v_last_name(c: _Chunk, f: FieldDef) -> pa.Array:
    _, last = c.person()
    return c.take(_LAST, last, c.null_mask(f, 1.0), dictionary=True)


def _v_name(c: _Chunk, f: FieldDef) -> pa.Array | None:
    obj = c.obj.name
    if "FirstName" in c.obj.fields and "LastName" in c.obj.fields and not c.obj.fields["LastName"].dormant:
        first, last = c.person()
        last_names = _LAST.take(pa.array(last))
        full = pc.binary_join_element_wise(_FIRST.take(pa.array(first)), last_names, " ")
        return pc.if_else(pa.array(c.cache["no_first_name"]), last_names, full)
    pools = {"Profile": PROFILE_NAMES, "UserRole": ROLE_NAMES, "Product2": PRODUCT_NAMES}
    if obj in pools:
        pool = pools[obj]
        return pa.array(
            [pool[i % len(pool)] if i < len(pool) else f"{pool[i % len(pool)]} {i}" for i in c.rows]
        )
    if obj == "OpportunityStage":
        stages = list(STAGES)
        return pa.array([stages[i % len(stages)] for i in c.rows])
    if obj == "Pricebook2":
        return pa.array(
            ["Standard Price Book" if i == 0 else f"Price Book {i}: {WORDS[i % len(WORDS)]}" for i in c.rows]
        )
    if f.auto_number:
        digits = pc.utf8_lpad(pa.array(c.rows + 1).cast(pa.string()), width=6, padding="0")
        return pc.binary_join_element_wise(pa.scalar(c.obj.label[:3].upper() + "-"), digits, "")
    if obj in ("Account", "Lead") or obj.endswith("__c"):
        return c.company_names()
    if obj.endswith("Tag"):
        return _text_pool(
            c, f, ("vip", "renewal", "churn-risk", "q3-push", "partner", "ünïcode-tag", "emoji 🎯"), 1.0
        )
    label = c.obj.label
    words = pa.array(WORDS).take(pa.array(c.rng(f.name).integers(0, len(WORDS), c.n)))
    numbers = pa.array(c.rows + 1).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(label), words, numbers, " ")


def _v_company(c: _Chunk, f: FieldDef) -> pa.Array:
    return _masked(c.company_names(), c.null_mask(f, 0.95))


def _v_title(c: _Chunk, f: FieldDef) -> pa.Array | None:
    if f.type not in ("string", "combobox"):
        return None
    return _text_pool(c, f, TITLES, 0.75)


def _v_description(c: _Chunk, f: FieldDef) -> pa.Array | None:
    if f.type not in ("textarea", "string"):
        return None
    return _text_pool(c, f, DESCRIPTIONS, 0.45)


def _v_auto_number(c: _Chunk, f: FieldDef) -> pa.Array:
    return pc.utf8_lpad(pa.array(c.rows + 1001).cast(pa.string()), width=8, padding="0")


def _v_username(c: _Chunk, f: FieldDef) -> pa.Array:
    first, last = c.person()
    local = pc.binary_join_element_wise(
        _FIRST_SLUG.take(pa.array(first)), _LAST_SLUG.take(pa.array(last)), "."
    )
    numbers = pa.array(c.rows + 1).cast(pa.string())
    names = pc.binary_join_element_wise(local, numbers, pa.scalar("@emulator.example.com"), "")
    # User 1 is the admin the emulator's credentials log in as.
    return pc.if_else(pa.array(c.rows == 0), pa.scalar("admin@example.com"), names)


def _v_alias(c: _Chunk, f: FieldDef) -> pa.Array:
    first, last = c.person()
    alias = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(_FIRST_SLUG.take(pa.array(first)), 0, 1),
        pc.utf8_slice_codeunits(_LAST_SLUG.take(pa.array(last)), 0, 4),
        pa.array(c.rows % 100).cast(pa.string()),
        "",
    )
    return alias


def _v_stage(c: _Chunk, f: FieldDef) -> pa.Array:
    if c.obj.name == "OpportunityStage":
        stages = list(STAGES)
        return pa.array([stages[i % len(stages)] for i in c.rows])
    return c.take(c.gen.pool("stages", lambda: list(STAGES)), _stage_index(c), None, dictionary=True)


def _stage_index(c: _Chunk) -> np.ndarray:
    if "stage" not in c.cache:
        if c.obj.name == "OpportunityStage":
            c.cache["stage"] = c.rows % len(STAGES)
        else:
            weights = np.array([8, 8, 7, 6, 5, 4, 5, 5, 30, 22], dtype=float)
            c.cache["stage"] = c.rng("stage").choice(len(STAGES), size=c.n, p=weights / weights.sum())
    return c.cache["stage"]


def _stage_fact(position: int) -> Gen:
    def value(c: _Chunk, f: FieldDef) -> pa.Array:
        facts = [row[position] for row in STAGES.values()]
        picked = np.array(facts, dtype=object)[_stage_index(c)]
        if position == 0:
            return decimal_array(np.array(picked, dtype=np.int64), 0, f, None)
        if position in (3, 4):
            return pa.array(picked.astype(bool))
        return c.take(pa.array(sorted(set(facts))), np.searchsorted(sorted(set(facts)), picked), None, True)

    return value


def _v_close_date(c: _Chunk, f: FieldDef) -> pa.Array:
    days = c.gen.created[c.rows] // 86_400_000 + c.rng(f.name).integers(7, 240, c.n)
    return pa.array(days.astype("datetime64[D]"))


def _status_closed(closed_values: tuple[str, ...]) -> Gen:
    def value(c: _Chunk, f: FieldDef) -> pa.Array:
        status = c.obj.fields["Status"]
        values = status.picklist
        idx = _status_index(c, status)
        closed = np.isin(np.array(values, dtype=object)[idx], closed_values)
        return pa.array(closed)

    return value


def _status_index(c: _Chunk, status: FieldDef) -> np.ndarray:
    if "status" not in c.cache:
        values = status.picklist or ("Open",)
        weights = 1.0 / np.arange(1, len(values) + 1) ** 0.3
        c.cache["status"] = c.rng("status").choice(len(values), size=c.n, p=weights / weights.sum())
    return c.cache["status"]


def _v_status(c: _Chunk, f: FieldDef) -> pa.Array:
    if not f.picklist:
        return _v_picklist(c, f)
    return c.take(
        c.gen.pool(("picklist", f.name), lambda: f.picklist), _status_index(c, f), None, dictionary=True
    )


def _v_closed_date(c: _Chunk, f: FieldDef) -> pa.Array:
    status = c.obj.fields["Status"]
    closed = np.array(status.picklist, dtype=object)[_status_index(c, status)] == "Closed"
    created = c.gen.created[c.rows]
    closed_at = created + ((c.gen.modified[c.rows] - created) * c.rng(f.name).random(c.n)).astype(np.int64)
    return c.ms_array(closed_at, ~closed)


def _v_amount(c: _Chunk, f: FieldDef) -> pa.Array:
    cents = _amount_cents(c)
    return decimal_array(cents, 2, f, c.null_mask(f, 0.9))


def _amount_cents(c: _Chunk) -> np.ndarray:
    if "amount" not in c.cache:
        c.cache["amount"] = (c.rng("amount").lognormal(10, 1.1, c.n) * 100).astype(np.int64).clip(100, 10**12)
    return c.cache["amount"]


def _v_expected_revenue(c: _Chunk, f: FieldDef) -> pa.Array:
    probability = np.array([row[0] for row in STAGES.values()], dtype=np.int64)[_stage_index(c)]
    return decimal_array(_amount_cents(c) * probability // 100, 2, f, None)


def _v_period(kind: str) -> Gen:
    def value(c: _Chunk, f: FieldDef) -> pa.Array:
        start_days = c.gen.epoch // 86_400_000 - 4 * 365
        months = c.rows  # one fiscal month per record, consecutive
        # Units spelled out: NumPy 2.5 deprecates adding bare integers to datetimes (a future error).
        first_month = np.datetime64(int(start_days), "D").astype("datetime64[M]")
        start = (first_month + np.asarray(months).astype("timedelta64[M]")).astype("datetime64[D]")
        if kind == "start":
            return pa.array(start)
        if kind == "end":
            next_month = start.astype("datetime64[M]") + np.timedelta64(1, "M")
            end = next_month.astype("datetime64[D]") - np.timedelta64(1, "D")
            return pa.array(end)
        if kind == "number":
            return pa.array((months % 12 + 1).astype(np.int32))
        return None

    return value


_OVERRIDES: dict[tuple[str, str], Gen] = {
    ("Opportunity", "StageName"): _v_stage,
    ("OpportunityStage", "ApiName"): _v_stage,
    ("OpportunityStage", "MasterLabel"): _v_stage,
    ("Opportunity", "Probability"): _stage_fact(0),
    ("OpportunityStage", "DefaultProbability"): _stage_fact(0),
    ("Opportunity", "ForecastCategoryName"): _stage_fact(1),
    ("OpportunityStage", "ForecastCategoryName"): _stage_fact(1),
    ("Opportunity", "ForecastCategory"): _stage_fact(2),
    ("OpportunityStage", "ForecastCategory"): _stage_fact(2),
    ("Opportunity", "IsClosed"): _stage_fact(3),
    ("OpportunityStage", "IsClosed"): _stage_fact(3),
    ("Opportunity", "IsWon"): _stage_fact(4),
    ("OpportunityStage", "IsWon"): _stage_fact(4),
    ("Opportunity", "CloseDate"): _v_close_date,
    ("Opportunity", "Amount"): _v_amount,
    ("Opportunity", "ExpectedRevenue"): _v_expected_revenue,
    ("Case", "Status"): _v_status,
    ("Case", "IsClosed"): _status_closed(("Closed",)),
    ("Case", "ClosedDate"): _v_closed_date,
    ("Task", "Status"): _v_status,
    ("Task", "IsClosed"): _status_closed(("Completed",)),
    ("Lead", "Status"): _v_status,
    ("Lead", "IsConverted"): _status_closed(("Closed - Converted",)),
    ("Case", "CaseNumber"): _v_auto_number,
    ("Contract", "ContractNumber"): _v_auto_number,
    ("Solution", "SolutionNumber"): _v_auto_number,
    ("User", "Username"): _v_username,
    ("User", "Alias"): _v_alias,
    ("User", "CommunityNickname"): _v_alias,
    ("Name", "Username"): _v_username,
    ("Period", "StartDate"): _v_period("start"),
    ("Period", "EndDate"): _v_period("end"),
    ("Period", "Number"): _v_period("number"),
}
_BY_NAME: dict[str, Gen] = {
    "FirstName": _v_first_name,
    "LastName": _v_last_name,
    "Name": _v_name,
    "Company": _v_company,
    "CompanyOrAccount": _v_company,
    "SuppliedCompany": _v_company,
    "Title": _v_title,
    "Description": _v_description,
    "Comments": _v_description,
    "CommentBody": _v_description,
    "Body": _v_description,
}


def storage_check(obj: ObjectDef, columns: dict[str, pa.Array]) -> None:
    """Raise if a generated column does not fit the store's type for its field (development aid)."""
    for name, array in columns.items():
        expected = arrow_type(obj.fields[name])
        actual = array.type
        if pa.types.is_null(actual):
            continue
        if pa.types.is_dictionary(actual):
            actual = actual.value_type
        if actual != expected:
            raise AssertionError(f"{obj.name}.{name}: generated {array.type}, store expects {expected}")
