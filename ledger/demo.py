"""The demo data set (``suyuan demo``): 2016–2020 poverty-alleviation programmes, reproducibly.

:func:`load_demo` fills an initialised log with keys, households, fund trails,
projects and produce batches drawn from public reporting on five places (see
docs/DEMO.md for the sources and what the set contains):

* 讷河市 Nehe (Heilongjiang): Stropharia mushrooms (赤松茸) from 57 planting bases,
  red millet and soy; 2.8 km of road hardening for 1.8 million yuan; anti-poverty
  insurance topping incomes up by at most 5,000 yuan; an elder-care fund paid by
  children and donors; the cold store the mushrooms are stored in;
* 浑源县 Hunyuan (Shanxi): millet sold online at 10 yuan per jin, liangfen, astragalus;
* 东源县, 河源市 Heyuan (Guangdong): single-clove garlic and pomelo through the Shenhe
  (深河) service centre;
* 港南区 Gangnan (Guangxi): 2,000 yuan of industry subsidy for each of 9,734
  households (19,468,000 yuan); 雨露计划 grants of 1,500 yuan;
* 环江县 Huanjiang (Guangxi): micro-loans of up to 50,000 yuan with three years of
  interest subsidy and 8% annual dividends from entrusted operation; a water works.

Contracts:

* **Pseudonymous.**  Households appear only under codes (``GX-GN-000123``).  A few
  have a private record (``ledger.private``) with an obviously fake name
  (``示例户主 0001``) and an ID number in the non-existent area ``999999``; nothing
  personal is in any entry.
* **Deterministic.**  Every body — ids, codes, amounts, dates, document hashes,
  commitments — follows from ``seed`` alone (:class:`random.Random`); only the
  keys (fresh Ed25519 keys in the instance's key store) and the statements'
  ``created`` times differ between two loads.  The commitments' salts come from
  the same generator: fine for fake records, never for real ones.
* **Idempotent.**  The demo's keys are named ``demo-…``; the load ends with a
  ``note`` by ``demo-auditor`` whose text starts with :data:`MARKER`.  A second call
  finds the marker and changes nothing.  A load that stopped half-way (demo keys
  registered, no marker) is refused: load the demo into a fresh log.
* **Errors.**  Only :class:`ledger.errors.Error` subclasses escape.  The deliberate
  anomalies (an over-spend, a duplicate payment) are appended, refused by the rules,
  and kept by the log in ``refusals``; if the rules ever accepted one, the load stops
  with :class:`~ledger.errors.ConfigError`.

Crash safety: statements are appended in all-or-nothing batches of at most
``MAX_BATCH``; a crash between batches leaves a partial demo that the next call
reports (see above).  Private records are stored before the entries that commit
to them (``ledger.private``'s order); demo key files are deleted again if their
registration fails.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ledger import schema
from ledger.blobs import default_store, evidence_document
from ledger.domain import gs1
from ledger.entry import (
    Entry,
    SignedStatement,
    decode_entry,
    format_time,
    make_statement,
    nfc,
    sign_statement,
)
from ledger.errors import (
    ConfigError,
    DuplicatePayment,
    Error,
    InvalidInput,
    Overspend,
    RuleViolation,
)
from ledger.instance import Instance
from ledger.log import MAX_BATCH, Log
from ledger.note import Signer
from ledger.private import (
    PrivateStore,
    commitment_of,
    id_check_digit,
    load_master_key,
    normalise_personal,
)

#: Every demo key's name starts with this.
KEY_PREFIX = "demo-"
#: The key that signs the completion note.
AUDITOR = "demo-auditor"
#: The completion note's text starts with this.
MARKER = "Suyuan demo data set loaded"
#: At least this many households per place when ``households`` is given.
MIN_PER_PLACE = 4
DEFAULT_SEED = 2016

YUAN = 100  # fen

Progress = Callable[[str], None]
Body = dict[str, Any]


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`load_demo` did.

    ``counts``: entries appended by this call, per kind (empty when already loaded);
    ``refused``: deliberate anomalies the rules refused, per error code
    (``overspend``, ``duplicate_payment``); ``households``: households registered;
    ``first_seq``/``size``: the first seq the demo wrote (None if nothing) and the
    log's size afterwards.
    """

    already_loaded: bool
    counts: Mapping[str, int]
    refused: Mapping[str, int]
    households: int
    first_seq: int | None
    size: int

    @property
    def entries(self) -> int:
        return sum(self.counts.values())


# --- places ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Township:
    name: str
    slug: str  # ASCII, for key names


@dataclass(frozen=True)
class Place:
    """A county-level place and its default number of demo households."""

    code: str  # household code prefix, e.g. GX-GN
    province: str
    city: str
    county: str
    division_code: str
    english: str
    townships: tuple[Township, ...]
    villages_per_township: int
    households: int
    finance_org: str
    county_org: str
    village_offset: int

    @property
    def slug(self) -> str:
        return self.code.lower()

    def villages(self, township: int) -> list[str]:
        start = self.village_offset + township * self.villages_per_township
        return [
            _VILLAGE_STEMS[(start + j) % len(_VILLAGE_STEMS)] + "村"
            for j in range(self.villages_per_township)
        ]

    def location(self, township: int | None = None, village: int | None = None) -> dict[str, str]:
        loc = {
            "province": self.province,
            "city": self.city,
            "county": self.county,
            "division_code": self.division_code,
        }
        if township is not None:
            loc["township"] = self.townships[township].name
            if village is not None:
                loc["village"] = self.villages(township)[village]
        return loc


# Plausible village names (not a list of real villages): a village is "<stem>村".
_VILLAGE_STEMS = (
    "新兴",
    "红旗",
    "光明",
    "永丰",
    "东升",
    "前进",
    "富民",
    "兴隆",
    "太平",
    "和平",
    "联合",
    "长青",
    "双河",
    "三合",
    "胜利",
    "团结",
    "幸福",
    "民主",
    "建设",
    "向阳",
    "东风",
    "新华",
    "丰收",
    "金星",
    "朝阳",
    "长胜",
    "福安",
    "永安",
    "平安",
    "新立",
    "德胜",
    "宏伟",
    "新民",
    "保安",
    "万宝",
    "青山",
    "龙泉",
    "石门",
    "河东",
    "河西",
    "上庄",
    "下庄",
    "中和",
    "大同",
    "兴旺",
    "同心",
    "旭光",
    "新建",
    "复兴",
    "仁和",
    "安乐",
    "东兴",
    "西岭",
    "南坪",
    "北岭",
    "高田",
    "大坪",
    "六合",
    "四方",
    "五星",
    "九龙",
    "白石",
    "黄泥",
    "清水",
    "碧水",
    "红岩",
    "长岭",
    "马鞍",
    "凤凰",
    "龙塘",
    "东岸",
    "西湾",
    "桃源",
    "杨柳",
    "梨树",
    "枫林",
    "竹园",
    "松林",
    "柏树",
    "荷塘",
    "新屯",
    "坡头",
    "岭脚",
    "塘边",
    "水口",
    "江口",
    "石桥",
    "沙坪",
)

NEHE = Place(
    "HL-NH",
    "黑龙江省",
    "齐齐哈尔市",
    "讷河市",
    "230281",
    "Nehe",
    (
        Township("老莱镇", "laolai"),
        Township("拉哈镇", "laha"),
        Township("学田镇", "xuetian"),
        Township("龙河镇", "longhe"),
    ),
    3,
    240,
    "讷河市财政局",
    "讷河市扶贫开发工作办公室",
    0,
)
HUNYUAN = Place(
    "SX-HY",
    "山西省",
    "大同市",
    "浑源县",
    "140225",
    "Hunyuan",
    (
        Township("永安镇", "yongan"),
        Township("西坊城镇", "xifangcheng"),
        Township("沙圪坨镇", "shagetuo"),
        Township("大磁窑镇", "daciyao"),
    ),
    3,
    160,
    "浑源县财政局",
    "浑源县扶贫开发办公室",
    12,
)
HEYUAN = Place(
    "GD-HY",
    "广东省",
    "河源市",
    "东源县",
    "441625",
    "Dongyuan, Heyuan",
    (
        Township("仙塘镇", "xiantang"),
        Township("蓝口镇", "lankou"),
        Township("义合镇", "yihe"),
        Township("船塘镇", "chuantang"),
    ),
    3,
    96,
    "东源县财政局",
    "东源县扶贫开发办公室",
    24,
)
GANGNAN = Place(
    "GX-GN",
    "广西壮族自治区",
    "贵港市",
    "港南区",
    "450803",
    "Gangnan",
    (
        Township("桥圩镇", "qiaoxu"),
        Township("木格镇", "muge"),
        Township("木梓镇", "muzi"),
        Township("湛江镇", "zhanjiang"),
        Township("东津镇", "dongjin"),
        Township("新塘镇", "xintang"),
        Township("瓦塘镇", "watang"),
        Township("八塘街道", "batang"),
        Township("江南街道", "jiangnan"),
    ),
    6,
    9_734,
    "贵港市港南区财政局",
    "贵港市港南区扶贫开发办公室",
    36,
)
HUANJIANG = Place(
    "GX-HJ",
    "广西壮族自治区",
    "河池市",
    "环江毛南族自治县",
    "451226",
    "Huanjiang",
    (
        Township("思恩镇", "sien"),
        Township("水源镇", "shuiyuan"),
        Township("洛阳镇", "luoyang"),
        Township("下南乡", "xianan"),
    ),
    3,
    170,
    "环江毛南族自治县财政局",
    "环江毛南族自治县扶贫开发办公室",
    60,
)
PLACES = (NEHE, HUNYUAN, HEYUAN, GANGNAN, HUANJIANG)

# Headline figures from public reporting (docs/DEMO.md lists the sources).
GANGNAN_SUBSIDY_FEN = 2_000 * YUAN
YULU_GRANT_FEN = 1_500 * YUAN
INSURANCE_CAP_FEN = 5_000 * YUAN
ROAD_BUDGET_FEN = 1_800_000 * YUAN
ROAD_LENGTH_M = 2_800
LOAN_CAP_FEN = 50_000 * YUAN
DIVIDEND_PERCENT = 8
MILLET_PRICE_YUAN_PER_JIN = 10
#: 扶贫小额信贷 was lent at the benchmark rate for 1–3 years (4.75% since Oct 2015),
#: which the county paid for three years (贴息), in basis points.
LOAN_RATE_BP = 475
NEHE_PLANTING_BASES = 57

# Organisations of the non-government keys (fictional names).
AUDIT_ORG = "扶贫资金审计组（演示）"
NH_MUSHROOM_COOPS = tuple(f"讷河市{t.name}赤松茸种植专业合作社" for t in NEHE.townships)
NH_GRAIN_COOP = "讷河市龙河镇杂粮种植专业合作社"
NH_INSPECTOR = "讷河市农产品质量安全检测中心"
NH_COLD_STORE = "讷河市赤松茸保鲜冷库"
NH_RETAILER = "讷河市消费扶贫产品展销中心"
NH_ROAD_CONTRACTOR = "齐齐哈尔通达路桥工程有限公司"
NH_COLD_CONTRACTOR = "黑龙江寒地冷链工程有限公司"
HY_MILLET_COOP = "浑源县永安镇小米种植专业合作社"
HY_LIANGFEN = "浑源县凉粉加工扶贫车间"
HY_ASTRAGALUS_COOP = "浑源县黄芪种植专业合作社"
HY_INSPECTOR = "浑源县农产品质量安全检测站"
HY_LOGISTICS = "浑源县电商物流配送中心"
HY_SHOP = "浑源县扶贫产品网店"
DY_GARLIC_COOP = "东源县独头蒜种植专业合作社"
DY_POMELO_COOP = "东源县蜜柚种植专业合作社"
DY_INSPECTOR = "河源市农产品质量检测中心"
DY_LOGISTICS = "河源—深圳扶贫农产品冷链专线"
SHENHE = "深河消费扶贫服务中心"
HJ_WATER_CONTRACTOR = "河池市清源水利工程有限公司"
HJ_ENTERPRISE = "环江县香猪产业扶贫示范企业"

#: (key name suffix, role, organisation) of the keys beside each place's officials.
EXTRA_KEYS: dict[str, tuple[tuple[str, str, str], ...]] = {
    NEHE.code: (
        *((f"coop-csr{i + 1}", "producer", org) for i, org in enumerate(NH_MUSHROOM_COOPS)),
        ("coop-grain", "producer", NH_GRAIN_COOP),
        ("inspector", "inspector", NH_INSPECTOR),
        ("cold-store", "logistics", NH_COLD_STORE),
        ("retailer", "retailer", NH_RETAILER),
        ("road-contractor", "contractor", NH_ROAD_CONTRACTOR),
        ("cold-contractor", "contractor", NH_COLD_CONTRACTOR),
    ),
    HUNYUAN.code: (
        ("coop-millet", "producer", HY_MILLET_COOP),
        ("liangfen", "producer", HY_LIANGFEN),
        ("coop-astragalus", "producer", HY_ASTRAGALUS_COOP),
        ("inspector", "inspector", HY_INSPECTOR),
        ("logistics", "logistics", HY_LOGISTICS),
        ("shop", "retailer", HY_SHOP),
    ),
    HEYUAN.code: (
        ("coop-garlic", "producer", DY_GARLIC_COOP),
        ("coop-pomelo", "producer", DY_POMELO_COOP),
        ("inspector", "inspector", DY_INSPECTOR),
        ("logistics", "logistics", DY_LOGISTICS),
        ("shenhe", "retailer", SHENHE),
    ),
    GANGNAN.code: (),
    HUANJIANG.code: (("water-contractor", "contractor", HJ_WATER_CONTRACTOR),),
}

# 致贫原因 weights, roughly as the 2015 national registration reported them.
_CAUSE_WEIGHTS = {
    "illness": 42,
    "lack_of_skills": 12,
    "disability": 12,
    "lack_of_labour": 9,
    "lack_of_funds": 8,
    "lack_of_land": 5,
    "education": 5,
    "disaster": 3,
    "lack_of_water": 2,
    "poor_transport": 1,
    "other": 1,
}


def _key(place: Place, suffix: str) -> str:
    return f"{KEY_PREFIX}{place.slug}-{suffix}"


def _township_org(place: Place, township: Township) -> str:
    office = "办事处" if township.name.endswith("街道") else "人民政府"
    return f"{place.county}{township.name}{office}"


def key_specs() -> list[tuple[str, str, str]]:
    """Every demo key as (name, role, organisation), in registration order."""
    specs = [(AUDITOR, "auditor", AUDIT_ORG)]
    for place in PLACES:
        specs.append((_key(place, "finance"), "finance_officer", place.finance_org))
        specs.append((_key(place, "county"), "county_approver", place.county_org))
        for t, township in enumerate(place.townships):
            specs.append(
                (_key(place, township.slug), "township_approver", _township_org(place, township))
            )
            for v, village in enumerate(place.villages(t)):
                org = f"{place.county}{township.name}{village}村民委员会"
                specs.append((_key(place, f"{township.slug}-v{v + 1}"), "village_approver", org))
        for suffix, role, org in EXTRA_KEYS[place.code]:
            specs.append((_key(place, suffix), role, org))
    return specs


def spread(households: int | None) -> dict[str, int]:
    """Households per place code: the defaults, or ``households`` spread over the places in
    the defaults' proportions with at least :data:`MIN_PER_PLACE` each."""
    if households is None:
        return {p.code: p.households for p in PLACES}
    minimum = MIN_PER_PLACE * len(PLACES)
    if isinstance(households, bool) or not isinstance(households, int) or households < minimum:
        raise InvalidInput(
            f"the demo needs at least {minimum} households ({MIN_PER_PLACE} per place), "
            f"got {households!r}"
        )
    rest = households - minimum
    total = sum(p.households for p in PLACES)
    shares = {p.code: rest * p.households / total for p in PLACES}
    counts = {code: MIN_PER_PLACE + int(share) for code, share in shares.items()}
    by_remainder = sorted(shares, key=lambda c: (-(shares[c] - int(shares[c])), c))
    for code in by_remainder[: households - sum(counts.values())]:
        counts[code] += 1
    return counts


# --- the household register -----------------------------------------------------------------


@dataclass(frozen=True)
class Household:
    code: str
    place: Place
    township: int
    village: int
    year: int
    index: int  # 1-based within the place


@dataclass(frozen=True)
class Lot:
    """A produce lot as the demo builds it (quantity in ``unit``)."""

    gtin: str
    lot: str
    product: tuple[str, str]
    produced: str
    quantity: int
    unit: str


def _fake_personal(rng: random.Random, number: int) -> dict[str, str]:
    """An obviously fake personal record: 示例户主 NNNN and an ID in the unused area 999999."""
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365))
    first17 = f"999999{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return {"name": f"示例户主 {number:04d}", "id_number": first17 + id_check_digit(first17)}


def _rounded_up(amount_fen: int, step_yuan: int) -> int:
    step = step_yuan * YUAN
    return -(-amount_fen // step) * step


def _doc_bytes(title: str, lines: Sequence[str]) -> bytes:
    body = "\n".join(lines)
    return (
        f"{title}\n\n{body}\n\n"
        "——\n溯源演示数据，非真实文件。Suyuan demo data, not a real document.\n"
    ).encode()


# --- the loader ------------------------------------------------------------------------------


@dataclass
class _Loader:
    instance: Instance
    log: Log
    seed: int
    counts: dict[str, int]
    progress: Progress
    rng: random.Random = field(init=False)
    keys: dict[str, Signer] = field(default_factory=dict)
    pending: list[SignedStatement] = field(default_factory=list)
    appended: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    households: dict[str, list[Household]] = field(default_factory=dict)
    first_seq: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        folder = self.instance.settings.instance
        self.blobs = default_store(folder)
        self.private = PrivateStore(
            self.instance.engine, load_master_key(folder, self.instance.env)
        )
        self.orgs = {name: org for name, _role, org in key_specs()}

    # appending

    def add(self, kind: str, body: Body, *signers: str) -> None:
        """Queue a statement signed by the named demo keys; append once a full batch is queued
        (so memory stays bounded however many households are loaded)."""
        created = format_time(datetime.now(UTC))
        statement = make_statement(kind, nfc(body), self.log.origin, created)
        self.pending.append(sign_statement(statement, [self.keys[name] for name in signers]))
        self.appended[kind] += 1
        if len(self.pending) >= MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        """Append everything queued, in all-or-nothing batches of at most MAX_BATCH.

        The signatures were made here by keys registered (or being registered) in this
        log, so stage 1's verification is skipped (``signatures_verified``)."""
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), MAX_BATCH):
            done = self.log.append(pending[start : start + MAX_BATCH], signatures_verified=True)
            if self.first_seq is None and done:
                self.first_seq = done[0].seq

    def attempt(self, expected: type[RuleViolation], kind: str, body: Body, *signers: str) -> None:
        """Append a statement the rules MUST refuse with ``expected`` (the log keeps it in
        ``refusals``)."""
        self.flush()
        self.add(kind, body, *signers)
        self.appended[kind] -= 1
        try:
            self.flush()
        except expected as exc:
            self.refused[exc.code] += 1
            return
        raise ConfigError(
            f"the ledger's rules accepted the demo's deliberate {expected.__name__} attempt "
            f"({kind}); they are not the rules this demo was written for"
        )

    def doc(self, title: str, lines: Sequence[str]) -> dict[str, Any]:
        """Store a small text document in the blob store; return its evidence record."""
        return evidence_document(self.blobs, _doc_bytes(title, lines), f"{title}.txt", "text/plain")

    # keys

    def register_keys(self) -> None:
        admin = self.instance.author("admin")
        store, passphrase = self.instance.keystore, self.instance.passphrase()
        made: list[str] = []
        admin_name = "admin"
        self.keys[admin_name] = admin
        try:
            for name, role, org in key_specs():
                if store.author_path(name).exists():  # left by a load whose registration failed
                    signer = store.author(name, passphrase)
                else:
                    signer = store.new_author(name, passphrase)
                    made.append(name)
                self.keys[name] = signer
                body = {"name": name, "vkey": signer.verifier.vkey, "role": role, "org": org}
                self.add("key.registered", body, admin_name)
            self.flush()
        except Error:
            for name in made:
                store.discard_author(name)
            raise

    # households

    def register_households(self) -> None:
        number = 0
        for place in PLACES:
            members: list[Household] = []
            for index in range(1, self.counts[place.code] + 1):
                number += 1
                members.append(self._household(place, index, number))
            self.households[place.code] = members
        self.flush()

    def _household(self, place: Place, index: int, number: int) -> Household:
        rng = self.rng
        t = rng.randrange(len(place.townships))
        v = rng.randrange(place.villages_per_township)
        year = rng.choices((2014, 2015, 2016, 2017), (60, 18, 14, 8))[0]
        causes = [rng.choices(list(_CAUSE_WEIGHTS), list(_CAUSE_WEIGHTS.values()))[0]]
        if rng.random() < 0.4:
            second = rng.choices(list(_CAUSE_WEIGHTS), list(_CAUSE_WEIGHTS.values()))[0]
            if second not in causes:
                causes.append(second)
        size = rng.choices((1, 2, 3, 4, 5, 6, 7), (12, 20, 22, 24, 14, 6, 2))[0]
        code = f"{place.code}-{index:06d}"
        salt = rng.randbytes(32)
        personal = _fake_personal(rng, number)
        if index <= 2:  # a few private records, so crypto-shredding can be shown
            commitment = self.private.store(code, personal, salt)
        else:
            commitment = commitment_of(salt, normalise_personal(personal))
        body = {
            "code": code,
            "location": place.location(t, v),
            "members": size,
            "causes": causes,
            "year": year,
            "commitment": commitment,
        }
        self.add("household.identified", body, self.village_key(place, t, v))
        return Household(code, place, t, v, year, index)

    def village_key(self, place: Place, township: int, village: int) -> str:
        return _key(place, f"{place.townships[township].slug}-v{village + 1}")

    def township_key(self, place: Place, township: int) -> str:
        return _key(place, place.townships[township].slug)

    def approvers(self, household: Household) -> tuple[str, str, str]:
        """The finance officer and the 双认定 pair for a payment to ``household``."""
        place = household.place
        return (
            _key(place, "finance"),
            self.village_key(place, household.township, household.village),
            self.township_key(place, household.township),
        )

    def pick(self, code: str, share: float, minimum: int) -> list[Household]:
        """A deterministic sample of a place's households (in code order)."""
        members = self.households[code]
        wanted = min(len(members) - 1, max(minimum, round(len(members) * share)))
        return sorted(self.rng.sample(members, wanted), key=lambda h: h.index)

    # household statuses

    def change_statuses(self) -> None:
        """Most households exit (双认定) between 2016 and 2020; a few then go under monitoring;
        one in Nehe relapses after an illness and is registered again."""
        rng = self.rng
        relapsed = self.households[NEHE.code][0]
        for place in PLACES:
            for household in self.households[place.code]:
                if household is relapsed:
                    continue
                if rng.random() < 0.08:
                    continue  # still registered in mid-2020
                year = rng.choice(range(max(2016, household.year + 1), 2021))
                when = f"{year}-{rng.choice((11, 12)):02d}-{rng.randrange(1, 29):02d}"
                if year == 2020:
                    when = f"2020-{rng.choice((3, 4, 5)):02d}-{rng.randrange(1, 29):02d}"
                self.exit(household, when)
                if rng.random() < 0.03 and year < 2020:
                    self.add(
                        "household.status",
                        {
                            "code": household.code,
                            "status": "monitoring",
                            "date": f"{year + 1}-06-30",
                            "reason": "脱贫不稳定，纳入防返贫监测 (unstable income; relapse monitoring)",
                        },
                        self.township_key(place, household.township),
                    )
        self.exit(relapsed, "2017-12-15")
        village = self.village_key(NEHE, relapsed.township, relapsed.village)
        self.add(
            "household.status",
            {
                "code": relapsed.code,
                "status": "relapsed",
                "date": "2019-03-20",
                "reason": "户主因病住院，收入低于贫困线 (head of household hospitalised; income "
                "below the line)",
            },
            village,
        )
        self.add(
            "household.status",
            {
                "code": relapsed.code,
                "status": "identified",
                "date": "2019-04-10",
                "reason": "返贫户重新纳入建档立卡 (registered again after relapse)",
            },
            village,
        )
        self.flush()

    def exit(self, household: Household, when: str) -> None:
        _, village, township = self.approvers(household)
        self.add(
            "household.status",
            {
                "code": household.code,
                "status": "exited",
                "date": when,
                "reason": "收入稳定超过国家扶贫标准，两不愁三保障 (income above the line; "
                "food, clothing, schooling, health care and housing secured)",
            },
            village,
            township,
        )

    # funds: shared steps

    def source(
        self,
        place: Place,
        ident: str,
        type_: str,
        zh: str,
        en: str,
        amount: int,
        year: int,
        payer: str,
    ) -> None:
        self.add(
            "fund.source",
            {
                "id": ident,
                "type": type_,
                "name": {"zh": zh, "en": en},
                "amount_fen": amount,
                "year": year,
                "payer": payer,
            },
            _key(place, "finance"),
        )

    def allocate(
        self,
        place: Place,
        ident: str,
        source: str,
        amount: int,
        purpose: str,
        scope: tuple[str, str],
        zh: str,
        en: str,
        policy: Body | None = None,
    ) -> None:
        body: Body = {
            "id": ident,
            "source": source,
            "amount_fen": amount,
            "purpose": purpose,
            scope[0]: scope[1],
            "name": {"zh": zh, "en": en},
        }
        if policy is not None:
            body["policy"] = policy
        self.add("fund.allocated", body, _key(place, "finance"))

    def pay_household(
        self,
        ident: str,
        allocation: str,
        household: Household,
        amount: int,
        purpose: str,
        period: str,
        when: str,
        **extra: Any,
    ) -> None:
        body: Body = {
            "id": ident,
            "allocation": allocation,
            "recipient": {"household": household.code},
            "amount_fen": amount,
            "purpose": purpose,
            "period": period,
            "date": when,
            **extra,
        }
        self.add("fund.disbursed", body, *self.approvers(household))

    def receipts(self, title: str, paid: Sequence[tuple[str, Household, int]], when: str) -> None:
        """Per village, one signed payment roster (发放花名册) as the receipts' evidence."""
        by_village: dict[tuple[int, int], list[tuple[str, Household, int]]] = {}
        for item in paid:
            by_village.setdefault((item[1].township, item[1].village), []).append(item)
        for (t, v), items in sorted(by_village.items()):
            place = items[0][1].place
            where = f"{place.townships[t].name}{place.villages(t)[v]}"
            lines = [f"{h.code}\t{amount // YUAN} 元\t已领取" for _, h, amount in items]
            roster = self.doc(f"{place.county}{where}{title}发放花名册", lines)
            for ident, _household, _amount in items:
                self.add(
                    "fund.received",
                    {"disbursement": ident, "date": when, "evidence": [roster]},
                    self.village_key(place, t, v),
                )

    # funds: the programmes

    def gangnan_industry_subsidy(self) -> None:
        place = GANGNAN
        members = self.households[place.code]
        total = GANGNAN_SUBSIDY_FEN * len(members)
        self.source(
            place,
            "GX-GN-2017-IND-SRC",
            "central",
            "2017年港南区产业以奖代补资金（中央和自治区财政专项扶贫资金）",
            "Gangnan 2017 industry subsidy (central and regional special poverty funds)",
            total,
            2017,
            "贵港市港南区财政局",
        )
        self.allocate(
            place,
            "GX-GN-2017-IND",
            "GX-GN-2017-IND-SRC",
            total,
            "industry_subsidy",
            ("programme", "GX-GN-industry-subsidy"),
            "2017年港南区产业奖补：每户2000元",
            "Gangnan 2017 industry subsidy: 2,000 yuan per household",
            {"max_per_recipient_fen": GANGNAN_SUBSIDY_FEN},
        )
        paid = []
        for household in members:
            ident = f"GX-GN-2017-IND-{household.index:06d}"
            day = 10 + household.township * 2
            self.pay_household(
                ident,
                "GX-GN-2017-IND",
                household,
                GANGNAN_SUBSIDY_FEN,
                "industry_subsidy",
                "2017",
                f"2017-11-{day:02d}",
            )
            paid.append((ident, household, GANGNAN_SUBSIDY_FEN))
        self.flush()
        self.receipts("2017年产业奖补资金", paid, "2017-12-05")
        self.flush()

    def gangnan_yulu(self) -> None:
        """雨露计划: 1,500 yuan per vocational-school student and semester; one household with
        twins in school is allowed a second grant by a county exception."""
        place = GANGNAN
        students = self.pick(place.code, 0.03, 2)
        total = YULU_GRANT_FEN * (2 * len(students) + 1)
        self.source(
            place,
            "GX-GN-2018-YULU-SRC",
            "provincial",
            "2018年港南区雨露计划助学补助资金",
            "Gangnan 2018 Rain and Dew plan (雨露计划) grants",
            total,
            2018,
            "广西壮族自治区财政厅",
        )
        self.allocate(
            place,
            "GX-GN-2018-YULU",
            "GX-GN-2018-YULU-SRC",
            total,
            "education_grant",
            ("programme", "GX-GN-yulu"),
            "雨露计划中高职学生补助：每生每学期1500元",
            "Rain and Dew plan: 1,500 yuan per vocational student and semester",
        )
        for period, when in (("2018-H2", "2018-10-15"), ("2019-H1", "2019-04-15")):
            for household in students:
                self.pay_household(
                    f"GX-GN-YULU-{period}-{household.index:06d}",
                    "GX-GN-2018-YULU",
                    household,
                    YULU_GRANT_FEN,
                    "education_grant",
                    period,
                    when,
                )
        twins = students[0]
        self.add(
            "fund.exception",
            {
                "programme": "GX-GN-yulu",
                "household": twins.code,
                "period": "2018-H2",
                "reason": "该户两名子女同时就读中职学校，每生享受补助 (two children in vocational "
                "school; one grant each)",
            },
            _key(place, "county"),
        )
        self.pay_household(
            f"GX-GN-YULU-2018-H2-{twins.index:06d}-2",
            "GX-GN-2018-YULU",
            twins,
            YULU_GRANT_FEN,
            "education_grant",
            "2018-H2",
            "2018-10-20",
        )
        self.flush()

    def nehe_insurance(self) -> None:
        """防贫保险: pays the gap to the line, at most 5,000 yuan per household and year."""
        place = NEHE
        insured = self.pick(place.code, 0.12, 2)
        amounts = [INSURANCE_CAP_FEN] + [self.rng.randrange(300, 5_000) * YUAN for _ in insured[1:]]
        total = _rounded_up(sum(amounts), 10_000)
        self.source(
            place,
            "HL-NH-2019-INS-SRC",
            "county",
            "2019年讷河市防贫保险资金",
            "Nehe 2019 anti-poverty insurance fund",
            total,
            2019,
            "讷河市财政局",
        )
        self.allocate(
            place,
            "HL-NH-2019-INS",
            "HL-NH-2019-INS-SRC",
            total,
            "insurance_topup",
            ("programme", "HL-NH-anti-poverty-insurance"),
            "防贫保险：收入低于防贫线的差额补足，每户每年最高5000元",
            "Anti-poverty insurance: tops income up to the line, at most 5,000 yuan a year",
            {"max_per_recipient_fen": INSURANCE_CAP_FEN},
        )
        paid = []
        for household, amount in zip(insured, amounts, strict=True):
            ident = f"HL-NH-2019-INS-{household.index:06d}"
            self.pay_household(
                ident, "HL-NH-2019-INS", household, amount, "insurance_topup", "2019", "2019-12-18"
            )
            paid.append((ident, household, amount))
        self.receipts("2019年防贫保险理赔金", paid, "2019-12-28")
        self.flush()

    def nehe_elder_care(self) -> None:
        """孝善养老: children pay 100–200 yuan a month for their parents through the fund;
        donors add 10% of the year's contributions as a bonus."""
        place = NEHE
        elders = self.pick(place.code, 0.06, 1)
        monthly = {h.code: self.rng.choice((100, 150, 200)) * YUAN for h in elders}
        contributions = sum(monthly.values()) * 12
        bonuses = {code: amount * 12 // 10 for code, amount in monthly.items()}
        self.source(
            place,
            "HL-NH-2019-ELDER-CHILDREN",
            "contribution",
            "2019年讷河市孝善养老基金（子女缴纳赡养金）",
            "Nehe 2019 elder-care fund: children's contributions",
            contributions,
            2019,
            "赡养人（子女）按月缴纳",
        )
        self.source(
            place,
            "HL-NH-2019-ELDER-DONORS",
            "donation",
            "2019年讷河市孝善养老基金（社会捐赠）",
            "Nehe 2019 elder-care fund: donations",
            _rounded_up(sum(bonuses.values()), 1_000),
            2019,
            "爱心企业和社会人士捐赠",
        )
        self.allocate(
            place,
            "HL-NH-2019-ELDER",
            "HL-NH-2019-ELDER-CHILDREN",
            contributions,
            "elder_care",
            ("programme", "HL-NH-elder-care"),
            "孝善养老：子女缴纳的赡养金按月发放给老人",
            "Elder care: the children's contributions, paid monthly to their parents",
        )
        self.allocate(
            place,
            "HL-NH-2019-ELDER-BONUS",
            "HL-NH-2019-ELDER-DONORS",
            sum(bonuses.values()),
            "elder_care",
            ("programme", "HL-NH-elder-care-bonus"),
            "孝善养老奖励金：按子女全年缴纳额的10%发放",
            "Elder-care bonus: 10% of the year's contributions, from donations",
        )
        for month in range(1, 13):
            for household in elders:
                self.pay_household(
                    f"HL-NH-ELDER-2019-{month:02d}-{household.index:06d}",
                    "HL-NH-2019-ELDER",
                    household,
                    monthly[household.code],
                    "elder_care",
                    f"2019-{month:02d}",
                    f"2019-{month:02d}-05",
                )
        for household in elders:
            self.pay_household(
                f"HL-NH-ELDER-BONUS-2019-{household.index:06d}",
                "HL-NH-2019-ELDER-BONUS",
                household,
                bonuses[household.code],
                "elder_care",
                "2019",
                "2019-12-30",
            )
        self.flush()

    def hunyuan_astragalus(self) -> None:
        """黄芪 planting subsidy, 500 yuan per mu; one payment keyed to the wrong household is
        reversed and paid again to the right one."""
        place = HUNYUAN
        growers = self.pick(place.code, 0.4, 2)
        mu = {h.code: self.rng.randrange(2, 9) for h in growers}
        total = _rounded_up(sum(mu.values()) * 500 * YUAN, 10_000)
        self.source(
            place,
            "SX-HY-2018-AST-SRC",
            "county",
            "2018年浑源县黄芪种植产业奖补资金",
            "Hunyuan 2018 astragalus planting subsidy",
            total,
            2018,
            "浑源县财政局",
        )
        self.allocate(
            place,
            "SX-HY-2018-AST",
            "SX-HY-2018-AST-SRC",
            total,
            "industry_subsidy",
            ("programme", "SX-HY-astragalus-subsidy"),
            "黄芪种植奖补：每亩500元",
            "Astragalus planting subsidy: 500 yuan per mu",
        )
        first = growers[0]
        wrong = next(h for h in self.households[place.code] if h not in growers)
        mistaken = f"SX-HY-2018-AST-{first.index:06d}-X"
        self.pay_household(
            mistaken,
            "SX-HY-2018-AST",
            wrong,
            mu[first.code] * 500 * YUAN,
            "industry_subsidy",
            "2018",
            "2018-09-12",
            reference=f"{mu[first.code]}亩 (mu)",
        )
        self.add(
            "fund.reversed",
            {
                "disbursement": mistaken,
                "reason": f"户码录入错误：应付 {first.code}，误付 {wrong.code}；资金已追回 "
                "(wrong household code keyed in; money recovered)",
            },
            _key(place, "finance"),
        )
        for grower in growers:
            self.pay_household(
                f"SX-HY-2018-AST-{grower.index:06d}",
                "SX-HY-2018-AST",
                grower,
                mu[grower.code] * 500 * YUAN,
                "industry_subsidy",
                "2018",
                "2018-09-20",
                reference=f"{mu[grower.code]}亩 (mu)",
            )
        self.flush()

    def huanjiang_credit(self) -> None:
        """扶贫小额信贷: 5万元以下、3年期、财政贴息; the households entrust the money to an
        enterprise (委托经营) that pays 8% a year, and repay at term."""
        place = HUANJIANG
        borrowers = self.pick(place.code, 0.3, 2)
        loans = {
            h.code: self.rng.choices((50_000, 30_000, 20_000), (70, 20, 10))[0] * YUAN
            for h in borrowers
        }
        loans[borrowers[0].code] = 30_000 * YUAN  # the corrected dividend below
        principal = sum(loans.values())
        interest = {code: amount * LOAN_RATE_BP // 10_000 for code, amount in loans.items()}
        dividend = {code: amount * DIVIDEND_PERCENT // 100 for code, amount in loans.items()}
        finance = _key(place, "finance")
        self.source(
            place,
            "GX-HJ-2017-LOAN-SRC",
            "bank_credit",
            "2017年环江县扶贫小额信贷",
            "Huanjiang 2017 poverty micro-credit",
            principal,
            2017,
            "环江毛南族自治县农村信用合作联社",
        )
        self.source(
            place,
            "GX-HJ-2017-INTEREST-SRC",
            "county",
            "环江县扶贫小额信贷贴息资金（2017—2019年）",
            "Huanjiang micro-credit interest subsidy, 2017–2019",
            sum(interest.values()) * 3,
            2017,
            "环江毛南族自治县财政局",
        )
        # Room for the 2017 dividend paid in error before its correction.
        dividends = _rounded_up(sum(dividend.values()) * 3 + 1_600 * YUAN, 10_000)
        self.source(
            place,
            "GX-HJ-2017-DIVIDEND-SRC",
            "other",
            "委托经营分红资金（2017—2019年）",
            "Dividends from entrusted operation, 2017–2019",
            dividends,
            2017,
            HJ_ENTERPRISE,
        )
        self.allocate(
            place,
            "GX-HJ-2017-LOAN",
            "GX-HJ-2017-LOAN-SRC",
            principal,
            "micro_loan",
            ("programme", "GX-HJ-micro-credit"),
            "扶贫小额信贷：每户最高5万元，3年期，免抵押免担保",
            "Micro-credit: at most 50,000 yuan a household, 3 years, no collateral",
            {"max_per_recipient_fen": LOAN_CAP_FEN},
        )
        self.allocate(
            place,
            "GX-HJ-2017-INTEREST",
            "GX-HJ-2017-INTEREST-SRC",
            sum(interest.values()) * 3,
            "interest_subsidy",
            ("programme", "GX-HJ-loan-interest"),
            "小额信贷财政贴息：按基准利率4.75%全额贴息3年",
            "Interest subsidy: the 4.75% benchmark rate in full, for 3 years",
        )
        self.allocate(
            place,
            "GX-HJ-2017-DIVIDEND",
            "GX-HJ-2017-DIVIDEND-SRC",
            dividends,
            "dividend",
            ("programme", "GX-HJ-entrusted-dividend"),
            "委托经营分红：按贷款本金每年8%",
            "Entrusted-operation dividend: 8% of the principal a year",
        )
        paid = []
        for household in borrowers:
            ident = f"GX-HJ-LOAN-2017-{household.index:06d}"
            self.pay_household(
                ident,
                "GX-HJ-2017-LOAN",
                household,
                loans[household.code],
                "micro_loan",
                "2017",
                "2017-05-16",
                loan={"term_months": 36, "interest_subsidy_bp": LOAN_RATE_BP},
            )
            paid.append((ident, household, loans[household.code]))
        self.receipts("2017年扶贫小额信贷放款", paid, "2017-05-20")
        for year in (2017, 2018, 2019):
            for household in borrowers:
                self.pay_household(
                    f"GX-HJ-INTEREST-{year}-{household.index:06d}",
                    "GX-HJ-2017-INTEREST",
                    household,
                    interest[household.code],
                    "interest_subsidy",
                    str(year),
                    f"{year}-12-20",
                )
                amount = dividend[household.code]
                if year == 2017 and household is borrowers[0]:
                    amount = LOAN_CAP_FEN * DIVIDEND_PERCENT // 100  # the error corrected below
                self.pay_household(
                    f"GX-HJ-DIVIDEND-{year}-{household.index:06d}",
                    "GX-HJ-2017-DIVIDEND",
                    household,
                    amount,
                    "dividend",
                    str(year),
                    f"{year}-12-25",
                )
        first = borrowers[0]
        _, village, township = self.approvers(first)
        self.add(
            "fund.corrected",
            {
                "disbursement": f"GX-HJ-DIVIDEND-2017-{first.index:06d}",
                "amount_fen": dividend[first.code],
                "reason": "分红按5万元计算，该户贷款3万元，应为2400元 (dividend computed on "
                "50,000 yuan; the loan was 30,000, so 2,400 yuan)",
            },
            finance,
            village,
            township,
        )
        for household in borrowers:
            amount = loans[household.code]
            if household is borrowers[-1]:
                amount = amount // 2  # half repaid at term: the rest is overdue
            self.add(
                "fund.repaid",
                {
                    "disbursement": f"GX-HJ-LOAN-2017-{household.index:06d}",
                    "amount_fen": amount,
                    "date": "2020-05-12",
                },
                finance,
            )
        self.flush()

    # projects

    def project(self, place: Place, body: Body, signer: str) -> None:
        self.add("project.registered", {**body, "location": place.location(0, 0)}, signer)

    def milestone(self, project: str, stage: str, when: str, *signers: str, **extra: Any) -> None:
        self.add(
            "project.milestone",
            {"project": project, "stage": stage, "date": when, **extra},
            *signers,
        )

    def pay_contractor(
        self,
        place: Place,
        ident: str,
        allocation: str,
        org: str,
        amount: int,
        when: str,
        **extra: Any,
    ) -> None:
        """A project payment to the contractor, approved by the county (the allocation's policy)."""
        body: Body = {
            "id": ident,
            "allocation": allocation,
            "recipient": {"contractor": org},
            "amount_fen": amount,
            "purpose": "project_payment",
            "period": when[:4],
            "date": when,
            **extra,
        }
        self.add("fund.disbursed", body, _key(place, "finance"), _key(place, "county"))

    def nehe_road(self) -> None:
        """2.8 km of village road hardening for 1.8 million yuan; the completed milestone carries
        no document, and a claim beyond the contract is refused (over-spend)."""
        place, ident = NEHE, "HL-NH-2018-ROAD-01"
        county, township = _key(place, "county"), self.township_key(place, 0)
        contractor = _key(place, "road-contractor")
        where = f"{place.county}{place.townships[0].name}{place.villages(0)[0]}"
        contract = 1_746_000 * YUAN
        self.source(
            place,
            "HL-NH-2018-ROAD-SRC",
            "county",
            "2018年讷河市统筹整合使用财政涉农资金（通村道路）",
            "Nehe 2018 integrated agricultural funds: village roads",
            ROAD_BUDGET_FEN,
            2018,
            "讷河市财政局",
        )
        self.project(
            place,
            {
                "id": ident,
                "name": {"zh": f"{where}通村道路硬化工程", "en": "Village road hardening, 2.8 km"},
                "category": "road",
                "budget_fen": ROAD_BUDGET_FEN,
                "owner": "讷河市交通运输局",
                "plan": _plan(
                    "2018", ("04-15", "05-05", "05-20", "06-01", "09-30", "10-31", "11-15")
                ),
                "quantities": {"length_m": ROAD_LENGTH_M, "area_m2": ROAD_LENGTH_M * 45 // 10},
            },
            county,
        )
        self.allocate(
            place,
            "HL-NH-2018-ROAD",
            "HL-NH-2018-ROAD-SRC",
            ROAD_BUDGET_FEN,
            "project_payment",
            ("project", ident),
            "通村道路硬化工程款",
            "Village road works",
            {"approvals": ["county_approver"], "once_per_period": False},
        )
        docs = self.project_docs(where + "通村道路硬化工程", "2018")
        self.milestone(ident, "approved", "2018-04-10", county, evidence=[docs["approved"]])
        self.milestone(ident, "tendered", "2018-04-28", county, evidence=[docs["tendered"]])
        self.milestone(
            ident,
            "contracted",
            "2018-05-16",
            county,
            evidence=[docs["contracted"]],
            contract_fen=contract,
            contractor=NH_ROAD_CONTRACTOR,
        )
        self.pay_contractor(
            place,
            "HL-NH-ROAD-ADV",
            "HL-NH-2018-ROAD",
            NH_ROAD_CONTRACTOR,
            contract * 30 // 100,
            "2018-05-25",
            reference="预付款30% (30% advance)",
        )
        self.milestone(ident, "started", "2018-05-28", contractor)
        self.milestone(
            ident,
            "progress",
            "2018-07-15",
            contractor,
            percent=50,
            note="路基完成，开始铺筑水泥混凝土路面",
        )
        self.milestone(ident, "completed", "2018-09-26", contractor)
        self.pay_contractor(
            place,
            "HL-NH-ROAD-PROG",
            "HL-NH-2018-ROAD",
            NH_ROAD_CONTRACTOR,
            contract * 60 // 100,
            "2018-09-30",
            gate={"project": ident, "stage": "completed"},
            reference="完工进度款60%",
        )
        self.milestone(
            ident, "accepted", "2018-10-20", county, township, evidence=[docs["accepted"]]
        )
        self.pay_contractor(
            place,
            "HL-NH-ROAD-FINAL",
            "HL-NH-2018-ROAD",
            NH_ROAD_CONTRACTOR,
            contract * 10 // 100,
            "2018-11-20",
            gate={"project": ident, "stage": "accepted"},
            reference="验收后结算款10%",
        )
        self.milestone(
            ident,
            "notice",
            "2018-10-22",
            self.village_key(place, 0, 0),
            evidence=[docs["notice"]],
            notice_start="2018-10-22",
            notice_end="2018-10-31",
        )
        for pay in ("HL-NH-ROAD-ADV", "HL-NH-ROAD-PROG", "HL-NH-ROAD-FINAL"):
            receipt = self.doc(f"{NH_ROAD_CONTRACTOR}收款收据 {pay}", [f"收到工程款，编号 {pay}"])
            self.add(
                "fund.received",
                {"disbursement": pay, "date": "2018-12-01", "evidence": [receipt]},
                contractor,
            )
        self.flush()

    def nehe_cold_store(self) -> None:
        """The 500-tonne cold store the mushrooms are stored in: every stage, with documents."""
        place, ident = NEHE, "HL-NH-2019-COLD-01"
        county, township = _key(place, "county"), self.township_key(place, 0)
        contractor = _key(place, "cold-contractor")
        budget, contract = 2_600_000 * YUAN, 2_480_000 * YUAN
        self.source(
            place,
            "HL-NH-2019-COLD-SRC",
            "county",
            "2019年讷河市统筹整合使用财政涉农资金（产业配套）",
            "Nehe 2019 integrated agricultural funds: industry facilities",
            budget,
            2019,
            "讷河市财政局",
        )
        self.project(
            place,
            {
                "id": ident,
                "name": {"zh": "讷河市赤松茸保鲜冷库建设项目", "en": "Nehe Stropharia cold store"},
                "category": "cold_store",
                "budget_fen": budget,
                "owner": "讷河市农业农村局",
                "plan": _plan(
                    "2019", ("03-31", "04-20", "05-10", "05-20", "08-31", "09-20", "10-10")
                ),
                "quantities": {"capacity_t": 500, "area_m2": 1_200},
            },
            county,
        )
        self.allocate(
            place,
            "HL-NH-2019-COLD",
            "HL-NH-2019-COLD-SRC",
            budget,
            "project_payment",
            ("project", ident),
            "赤松茸保鲜冷库工程款",
            "Cold store works",
            {"approvals": ["county_approver"], "once_per_period": False},
        )
        docs = self.project_docs("讷河市赤松茸保鲜冷库建设项目", "2019")
        self.milestone(ident, "approved", "2019-03-25", county, evidence=[docs["approved"]])
        self.milestone(ident, "tendered", "2019-04-18", county, evidence=[docs["tendered"]])
        self.milestone(
            ident,
            "contracted",
            "2019-05-08",
            county,
            evidence=[docs["contracted"]],
            contract_fen=contract,
            contractor=NH_COLD_CONTRACTOR,
        )
        self.milestone(ident, "started", "2019-05-18", contractor)
        self.milestone(ident, "progress", "2019-07-10", contractor, percent=60)
        self.milestone(ident, "completed", "2019-08-28", contractor, evidence=[docs["completed"]])
        self.pay_contractor(
            place,
            "HL-NH-COLD-PROG",
            "HL-NH-2019-COLD",
            NH_COLD_CONTRACTOR,
            contract * 70 // 100,
            "2019-09-02",
            gate={"project": ident, "stage": "completed"},
        )
        self.milestone(
            ident, "accepted", "2019-09-16", county, township, evidence=[docs["accepted"]]
        )
        self.milestone(
            ident,
            "notice",
            "2019-09-18",
            township,
            evidence=[docs["notice"]],
            notice_start="2019-09-18",
            notice_end="2019-09-27",
        )
        self.pay_contractor(
            place,
            "HL-NH-COLD-FINAL",
            "HL-NH-2019-COLD",
            NH_COLD_CONTRACTOR,
            contract * 27 // 100,
            "2019-10-15",
            gate={"project": ident, "stage": "accepted"},
            reference="结算款（留3%质保金）",
        )
        self.flush()

    def huanjiang_water(self) -> None:
        """A drinking-water works: an advance paid before approval (no milestone evidence behind
        it), progress reports, and completion, acceptance and notice overdue."""
        place, ident = HUANJIANG, "GX-HJ-2020-WATER-01"
        county = _key(place, "county")
        contractor = _key(place, "water-contractor")
        budget, contract = 960_000 * YUAN, 925_000 * YUAN
        where = f"{place.townships[0].name}{place.villages(0)[0]}"
        self.source(
            place,
            "GX-HJ-2020-WATER-SRC",
            "central",
            "2020年中央财政专项扶贫资金（农村饮水安全巩固提升）",
            "2020 central special poverty funds: rural drinking water",
            budget,
            2020,
            "环江毛南族自治县财政局",
        )
        self.project(
            place,
            {
                "id": ident,
                "name": {"zh": f"环江县{where}饮水安全巩固提升工程", "en": "Drinking-water works"},
                "category": "water",
                "budget_fen": budget,
                "owner": "环江毛南族自治县水利局",
                "contractor": HJ_WATER_CONTRACTOR,
                "plan": _plan(
                    "2020", ("02-28", "03-20", "04-05", "04-15", "06-30", "07-31", "08-15")
                ),
                "quantities": {
                    "water_m3_per_day": 120,
                    "households_served": 260,
                    "persons_served": 1_050,
                },
            },
            county,
        )
        self.allocate(
            place,
            "GX-HJ-2020-WATER",
            "GX-HJ-2020-WATER-SRC",
            budget,
            "project_payment",
            ("project", ident),
            "饮水安全巩固提升工程款",
            "Drinking-water works",
            {"approvals": ["county_approver"], "once_per_period": False},
        )
        self.pay_contractor(
            place,
            "GX-HJ-WATER-ADV",
            "GX-HJ-2020-WATER",
            HJ_WATER_CONTRACTOR,
            contract * 30 // 100,
            "2020-02-20",
            reference="预付款30% (30% advance)",
        )
        docs = self.project_docs(f"环江县{where}饮水安全巩固提升工程", "2020")
        self.milestone(ident, "approved", "2020-02-26", county, evidence=[docs["approved"]])
        self.milestone(ident, "tendered", "2020-03-18", county, evidence=[docs["tendered"]])
        self.milestone(
            ident,
            "contracted",
            "2020-04-03",
            county,
            evidence=[docs["contracted"]],
            contract_fen=contract,
            contractor=HJ_WATER_CONTRACTOR,
        )
        self.milestone(ident, "started", "2020-04-16", contractor)
        self.milestone(ident, "progress", "2020-05-20", contractor, percent=40)
        self.milestone(
            ident,
            "progress",
            "2020-06-25",
            contractor,
            percent=75,
            note="管网铺设完成，蓄水池施工中",
        )
        self.flush()

    def project_docs(self, name: str, year: str) -> dict[str, dict[str, Any]]:
        titles = {
            "approved": f"关于{name}立项的批复",
            "tendered": f"{name}招标公告",
            "contracted": f"{name}施工合同",
            "completed": f"{name}完工报告",
            "accepted": f"{name}验收报告",
            "notice": f"{name}公示",
        }
        return {
            stage: self.doc(title, [f"项目：{name}", f"年度：{year}", f"文件：{title}"])
            for stage, title in titles.items()
        }

    # batches

    def lot(
        self,
        producer: str,
        item: Lot,
        place: Place,
        township: int,
        village: int,
        suppliers: Sequence[Household],
        *,
        lab: str,
        certifications: Sequence[Body] = (),
        net_content: Body | None = None,
    ) -> None:
        """Register a lot with its first inspection (the report goes to the blob store)."""
        report = self.report(lab, item, item.produced, passed=True)
        body: Body = {
            "gtin": item.gtin,
            "lot": item.lot,
            "product": {"zh": item.product[0], "en": item.product[1]},
            "origin": place.location(township, village),
            "producer": self.orgs[producer],
            "households": [
                {"household": h.code, "share_permille": s}
                for h, s in zip(suppliers, _shares(len(suppliers)), strict=True)
            ],
            "produced": item.produced,
            "quantity": item.quantity,
            "unit": item.unit,
            "inspections": [
                {"lab": lab, "result": "pass", "date": item.produced, "report_sha256": report}
            ],
        }
        if net_content is not None:
            body["net_content"] = net_content
        if certifications:
            body["certifications"] = list(certifications)
        self.add("batch.registered", body, producer)

    def report(self, lab: str, item: Lot, day: str, *, passed: bool, finding: str = "") -> str:
        """A test report in the blob store; return its SHA-256."""
        lines = [
            f"检验机构：{lab}",
            f"样品：{item.product[0]}（{item.product[1]}）",
            f"批次：GTIN {item.gtin} / {item.lot}",
            f"检验日期：{day}",
            f"检验项目：农药残留、重金属{finding and '、' + finding}",
            f"结论：{'合格 (pass)' if passed else '不合格 (fail)'}",
        ]
        return str(self.doc(f"{lab}检验报告 {item.lot} {day}", lines)["sha256"])

    def event(
        self,
        item: Lot,
        step: str,
        disposition: str,
        when: str,
        point: str,
        signer: str,
        **extra: Any,
    ) -> None:
        self.add(
            "batch.event",
            {
                "batch": {"gtin": item.gtin, "lot": item.lot},
                "biz_step": step,
                "disposition": disposition,
                "time": when,
                "read_point": point,
                **extra,
            },
            signer,
        )

    def inspect(self, item: Lot, day: date, lab: str, inspector: str, point: str) -> None:
        report = self.report(lab, item, day.isoformat(), passed=True)
        self.event(
            item,
            "inspecting",
            "conformant",
            _time(day, 9),
            point,
            inspector,
            inspection={
                "lab": lab,
                "result": "pass",
                "date": day.isoformat(),
                "report_sha256": report,
            },
        )

    def sell(
        self,
        item: Lot,
        day: date,
        shipper: str,
        origin: str,
        retailer: str,
        *,
        note: str | None = None,
    ) -> None:
        """Shipping → receiving → retail_selling, over three days from ``day``."""
        self.event(item, "shipping", "in_transit", _time(day, 7), origin, shipper)
        point = self.orgs[retailer]
        self.event(
            item,
            "receiving",
            "sellable_accessible",
            _time(day + timedelta(days=1), 10),
            point,
            retailer,
        )
        extra = {"note": note} if note else {}
        self.event(
            item,
            "retail_selling",
            "retail_sold",
            _time(day + timedelta(days=2), 15),
            point,
            retailer,
            **extra,
        )

    def suppliers(self, place: Place, township: int, count: int) -> list[Household]:
        members = self.households[place.code]
        local = [h for h in members if h.township == township] or members
        return sorted(self.rng.sample(local, min(count, len(local))), key=lambda h: h.index)

    def nehe_mushrooms(self) -> None:
        """57 planting bases, one autumn-2019 harvest lot each: inspected, packed, stored in the
        cold store, shipped, received and sold.  Three lots of the 老莱镇 cooperative are merged
        into one lot for a wholesale buyer (an EPCIS transformation)."""
        place = NEHE
        gtin = _gtin("0001", "00001")
        inspector, store, retailer = (
            _key(place, s) for s in ("inspector", "cold-store", "retailer")
        )
        merged: list[Lot] = []
        for n in range(1, NEHE_PLANTING_BASES + 1):
            t = (n - 1) % len(place.townships)
            v = (n - 1) // len(place.townships) % place.villages_per_township
            coop = _key(place, f"coop-csr{t + 1}")
            day = date(2019, 9, 1) + timedelta(days=(n * 7) % 45)
            item = Lot(
                gtin,
                f"NH-CSR19-B{n:02d}",
                ("讷河赤松茸（鲜品）", "Nehe Stropharia mushroom, fresh"),
                day.isoformat(),
                self.rng.randrange(800, 3_200),
                "kg",
            )
            self.lot(
                coop,
                item,
                place,
                t,
                v,
                self.suppliers(place, t, 1 + n % 4),
                lab=NH_INSPECTOR,
                certifications=[
                    {
                        "scheme": "poverty_alleviation_product",
                        "number": f"DEMO-FP-2019-NH-{t + 1:02d}",
                        "valid_until": "2020-12-31",
                    }
                ],
            )
            base = f"{place.townships[t].name}赤松茸种植基地第{n}号"
            self.inspect(item, day + timedelta(days=1), NH_INSPECTOR, inspector, base)
            self.event(
                item, "packing", "in_progress", _time(day + timedelta(days=1), 11), base, coop
            )
            self.event(
                item,
                "storing",
                "sellable_not_accessible",
                _time(day + timedelta(days=1), 16),
                NH_COLD_STORE,
                store,
                temperature_dc=20,
            )
            if t == 0 and len(merged) < 3:
                merged.append(item)
            else:
                self.sell(item, day + timedelta(days=4), store, NH_COLD_STORE, retailer)
        out = Lot(
            gtin,
            "NH-CSR19-M01",
            merged[0].product,
            "2019-10-20",
            sum(i.quantity for i in merged),
            "kg",
        )
        self.add(
            "batch.transformed",
            {
                "inputs": [
                    {"batch": {"gtin": i.gtin, "lot": i.lot}, "quantity": i.quantity}
                    for i in merged
                ],
                "outputs": [
                    {"gtin": out.gtin, "lot": out.lot, "quantity": out.quantity, "unit": "kg"}
                ],
                "date": out.produced,
                "process": "三个基地批次合并，整车供应批发商 (three base lots merged for one wholesale buyer)",
            },
            _key(place, "coop-csr1"),
        )
        self.sell(out, date(2019, 10, 21), store, NH_COLD_STORE, retailer)
        self.flush()

    def nehe_grain(self) -> None:
        """Red millet and soybeans from the 龙河镇 cooperative."""
        place, coop = NEHE, _key(NEHE, "coop-grain")
        inspector, retailer = _key(place, "inspector"), _key(place, "retailer")
        products = (
            (_gtin("0001", "00002"), "NH-HXM19-", ("讷河红小米", "Nehe red millet"), "jin"),
            (_gtin("0001", "00003"), "NH-DD19-", ("讷河大豆", "Nehe soybeans"), "kg"),
        )
        for gtin, prefix, product, unit in products:
            for n in range(1, 4):
                day = date(2019, 10, 5 + 6 * n)
                item = Lot(
                    gtin,
                    f"{prefix}{n:03d}",
                    product,
                    day.isoformat(),
                    self.rng.randrange(2_000, 9_000),
                    unit,
                )
                self.lot(coop, item, place, 3, n - 1, self.suppliers(place, 3, 3), lab=NH_INSPECTOR)
                self.inspect(item, day + timedelta(days=2), NH_INSPECTOR, inspector, NH_GRAIN_COOP)
                self.event(
                    item,
                    "packing",
                    "in_progress",
                    _time(day + timedelta(days=3), 10),
                    NH_GRAIN_COOP,
                    coop,
                )
                self.sell(item, day + timedelta(days=5), coop, NH_GRAIN_COOP, retailer)
        self.flush()

    def hunyuan_products(self) -> None:
        """Millet sold online at 10 yuan per jin (one lot split into 2-jin and 5-jin bags),
        liangfen, and astragalus with its geographical indication."""
        place = HUNYUAN
        millet_coop, shop = _key(place, "coop-millet"), _key(place, "shop")
        inspector, logistics = _key(place, "inspector"), _key(place, "logistics")
        price = f"网店售价{MILLET_PRICE_YUAN_PER_JIN}元/斤 (sold online at {MILLET_PRICE_YUAN_PER_JIN} yuan per jin)"
        millet = ("浑源小米", "Hunyuan millet")
        lots = []
        for n in range(1, 5):
            day = date(2019, 10, 8 + 4 * n)
            quantity = 5_000 if n == 1 else self.rng.randrange(3_000, 8_000)
            item = Lot(
                _gtin("0002", "00001"), f"HY-XM19-{n:03d}", millet, day.isoformat(), quantity, "jin"
            )
            self.lot(
                millet_coop,
                item,
                place,
                0,
                (n - 1) % 3,
                self.suppliers(place, 0, 4),
                lab=HY_INSPECTOR,
                certifications=[
                    {"scheme": "poverty_alleviation_product", "number": "DEMO-FP-2019-HY-01"}
                ],
            )
            self.inspect(item, day + timedelta(days=2), HY_INSPECTOR, inspector, HY_MILLET_COOP)
            self.event(
                item,
                "packing",
                "in_progress",
                _time(day + timedelta(days=3), 10),
                HY_MILLET_COOP,
                millet_coop,
            )
            lots.append(item)
        for item in lots[1:]:
            self.sell(
                item,
                date.fromisoformat(item.produced) + timedelta(days=6),
                logistics,
                HY_LOGISTICS,
                shop,
                note=price,
            )
        whole = lots[0]
        bags = (
            Lot(
                _gtin("0002", "00002"),
                "HY-XM19-001-2J",
                ("浑源小米（2斤装）", "Hunyuan millet, 2-jin bag"),
                "2019-10-18",
                1_000,
                "bag",
            ),
            Lot(
                _gtin("0002", "00003"),
                "HY-XM19-001-5J",
                ("浑源小米（5斤装）", "Hunyuan millet, 5-jin bag"),
                "2019-10-18",
                600,
                "bag",
            ),
        )
        self.add(
            "batch.transformed",
            {
                "inputs": [
                    {"batch": {"gtin": whole.gtin, "lot": whole.lot}, "quantity": whole.quantity}
                ],
                "outputs": [
                    {
                        "gtin": bag.gtin,
                        "lot": bag.lot,
                        "product": {"zh": bag.product[0], "en": bag.product[1]},
                        "quantity": bag.quantity,
                        "unit": "bag",
                        "net_content": {"quantity": grams, "unit": "g"},
                    }
                    for bag, grams in zip(bags, (1_000, 2_500), strict=True)
                ],
                "date": "2019-10-18",
                "process": "分装为2斤袋和5斤袋供网店销售 (packed into 2-jin and 5-jin bags for the online shop)",
            },
            millet_coop,
        )
        for bag, yuan in zip(bags, (20, 50), strict=True):
            self.sell(
                bag,
                date(2019, 10, 20),
                logistics,
                HY_LOGISTICS,
                shop,
                note=f"{price}；每袋{yuan}元",
            )
        self.hunyuan_liangfen_and_astragalus()
        self.flush()

    def hunyuan_liangfen_and_astragalus(self) -> None:
        place = HUNYUAN
        workshop, herb_coop = _key(place, "liangfen"), _key(place, "coop-astragalus")
        inspector, logistics, shop = (_key(place, s) for s in ("inspector", "logistics", "shop"))
        for n in range(1, 3):
            day = date(2019, 7, 10 * n)
            item = Lot(
                _gtin("0002", "00004"),
                f"HY-LF19-{n:03d}",
                ("浑源凉粉", "Hunyuan liangfen (mung-bean jelly)"),
                day.isoformat(),
                self.rng.randrange(300, 900),
                "box",
            )
            self.lot(
                workshop,
                item,
                place,
                1,
                0,
                self.suppliers(place, 1, 5),
                lab=HY_INSPECTOR,
                net_content={"quantity": 500, "unit": "g"},
            )
            self.event(item, "packing", "in_progress", _time(day, 14), HY_LIANGFEN, workshop)
            self.sell(item, day + timedelta(days=1), logistics, HY_LIANGFEN, shop)
        for n in range(1, 3):
            day = date(2019, 10, 25 + n)
            item = Lot(
                _gtin("0002", "00005"),
                f"HY-HQ19-{n:03d}",
                ("浑源黄芪（恒山黄芪）", "Hunyuan astragalus root"),
                day.isoformat(),
                self.rng.randrange(1_000, 4_000),
                "kg",
            )
            self.lot(
                herb_coop,
                item,
                place,
                2,
                n - 1,
                self.suppliers(place, 2, 3),
                lab=HY_INSPECTOR,
                certifications=[{"scheme": "geographical_indication", "number": "DEMO-GI-HY-0001"}],
            )
            self.inspect(item, day + timedelta(days=3), HY_INSPECTOR, inspector, HY_ASTRAGALUS_COOP)
            self.event(
                item,
                "storing",
                "sellable_not_accessible",
                _time(day + timedelta(days=4), 9),
                HY_ASTRAGALUS_COOP,
                herb_coop,
            )
            self.sell(item, day + timedelta(days=20), logistics, HY_ASTRAGALUS_COOP, shop)

    def heyuan_products(self) -> None:
        """Single-clove garlic and pomelo, sold through the Shenhe (深河) service centre.  A pomelo
        lot split into gift boxes fails a spot check there and is recalled: the recall reaches
        both gift-box lots derived from it."""
        place = HEYUAN
        inspector, logistics, shenhe = (
            _key(place, s) for s in ("inspector", "logistics", "shenhe")
        )
        crops = (
            (
                "coop-garlic",
                DY_GARLIC_COOP,
                _gtin("0003", "00001"),
                "DY-DS20-",
                ("东源独头蒜", "Dongyuan single-clove garlic"),
                date(2020, 5, 10),
            ),
            (
                "coop-pomelo",
                DY_POMELO_COOP,
                _gtin("0003", "00002"),
                "DY-MY19-",
                ("东源蜜柚", "Dongyuan honey pomelo"),
                date(2019, 10, 12),
            ),
        )
        pomelos = []
        for suffix, org, gtin, prefix, product, first in crops:
            coop = _key(place, suffix)
            for n in range(1, 4):
                day = first + timedelta(days=5 * n)
                quantity = (
                    2_000 if prefix == "DY-MY19-" and n == 3 else self.rng.randrange(1_500, 5_000)
                )
                item = Lot(gtin, f"{prefix}{n:03d}", product, day.isoformat(), quantity, "kg")
                self.lot(
                    coop, item, place, n - 1, 0, self.suppliers(place, n - 1, 3), lab=DY_INSPECTOR
                )
                self.inspect(item, day + timedelta(days=1), DY_INSPECTOR, inspector, org)
                self.event(
                    item, "packing", "in_progress", _time(day + timedelta(days=1), 14), org, coop
                )
                if prefix == "DY-MY19-" and n == 3:
                    pomelos.append((coop, item))
                else:
                    self.sell(item, day + timedelta(days=2), logistics, DY_LOGISTICS, shenhe)
        coop, whole = pomelos[0]
        boxes = tuple(
            Lot(
                _gtin("0003", "00003"),
                f"DY-MY19-003-G{k}",
                ("东源蜜柚礼盒（5公斤装）", "Dongyuan pomelo gift box, 5 kg"),
                "2019-10-29",
                200,
                "box",
            )
            for k in (1, 2)
        )
        self.add(
            "batch.transformed",
            {
                "inputs": [
                    {"batch": {"gtin": whole.gtin, "lot": whole.lot}, "quantity": whole.quantity}
                ],
                "outputs": [
                    {
                        "gtin": box.gtin,
                        "lot": box.lot,
                        "product": {"zh": box.product[0], "en": box.product[1]},
                        "quantity": box.quantity,
                        "unit": "box",
                        "net_content": {"quantity": 5, "unit": "kg"},
                    }
                    for box in boxes
                ],
                "date": "2019-10-29",
                "process": "装入5公斤礼盒 (packed into 5 kg gift boxes)",
            },
            coop,
        )
        for box in boxes:
            self.event(
                box,
                "shipping",
                "in_transit",
                _time(date(2019, 10, 30), 7),
                DY_LOGISTICS,
                _key(place, "logistics"),
            )
            self.event(
                box,
                "receiving",
                "sellable_accessible",
                _time(date(2019, 10, 31), 10),
                SHENHE,
                shenhe,
            )
        failed = boxes[1]
        finding = "毒死蜱残留超过限量 (chlorpyrifos above the limit)"
        report = self.report(DY_INSPECTOR, failed, "2019-11-02", passed=False, finding=finding)
        self.event(
            failed,
            "inspecting",
            "non_conformant",
            _time(date(2019, 11, 2), 10),
            SHENHE,
            inspector,
            inspection={
                "lab": DY_INSPECTOR,
                "result": "fail",
                "date": "2019-11-02",
                "report_sha256": report,
            },
        )
        notice = self.doc(
            f"{DY_POMELO_COOP}召回通知 {whole.lot}",
            [
                f"召回批次：{whole.lot} 及由其分装的 {boxes[0].lot}、{boxes[1].lot}",
                f"原因：{finding}",
            ],
        )
        self.add(
            "batch.recalled",
            {
                "batch": {"gtin": whole.gtin, "lot": whole.lot},
                "reason": f"深河服务中心抽检礼盒 {failed.lot}：{finding}；召回原批次及其全部分装批次",
                "evidence": [notice],
            },
            inspector,
        )
        self.flush()

    # anomalies and the marker

    def anomalies(self) -> None:
        """Deliberate problems for the anomaly report (docs/DEMO.md lists them)."""
        road = NEHE
        self.attempt(
            Overspend,
            "fund.disbursed",
            {
                "id": "HL-NH-ROAD-EXTRA",
                "allocation": "HL-NH-2018-ROAD",
                "recipient": {"contractor": NH_ROAD_CONTRACTOR},
                "amount_fen": 100_000 * YUAN,
                "purpose": "project_payment",
                "period": "2018",
                "date": "2018-12-10",
                "gate": {"project": "HL-NH-2018-ROAD-01", "stage": "accepted"},
                "reference": "追加工程量签证款 (claim for extra works)",
            },
            _key(road, "finance"),
            _key(road, "county"),
        )
        twice = self.households[GANGNAN.code][0]
        self.attempt(
            DuplicatePayment,
            "fund.disbursed",
            {
                "id": f"GX-GN-2017-IND-{twice.index:06d}-B",
                "allocation": "GX-GN-2017-IND",
                "recipient": {"household": twice.code},
                "amount_fen": GANGNAN_SUBSIDY_FEN,
                "purpose": "industry_subsidy",
                "period": "2017",
                "date": "2017-12-20",
            },
            *self.approvers(twice),
        )
        advance = self.disbursed_seq("GX-HJ-WATER-ADV")
        self.add(
            "note",
            {
                "text": "审计发现：饮水工程预付款在项目立项批复之前拨付，缺少里程碑证明材料 "
                "(audit finding: the water-works advance was paid before the project was approved, "
                "with no milestone evidence behind it)",
                "ref": advance,
            },
            AUDITOR,
        )
        self.flush()

    def disbursed_seq(self, ident: str) -> int:
        table = schema.metadata.tables["fund_disbursements"]
        with self.log.engine.connect() as conn:
            seq = conn.execute(
                select(table.c.disbursed_seq).where(table.c.id == ident)
            ).scalar_one()
        return int(seq)

    def finish(self) -> None:
        households = sum(len(v) for v in self.households.values())
        self.add(
            "note",
            {
                "text": f"{MARKER}: seed {self.seed}, {households} households, "
                f"{sum(self.appended.values()) + 1} entries. 溯源演示数据集已加载（化名户码，数据为演示用途）。"
            },
            AUDITOR,
        )
        self.flush()

    def run(self) -> None:
        steps: tuple[tuple[str, Callable[[], None]], ...] = (
            ("registering the demo keys", self.register_keys),
            ("registering households", self.register_households),
            ("household status changes", self.change_statuses),
            ("Gangnan industry subsidy", self.gangnan_industry_subsidy),
            ("Gangnan 雨露计划 grants", self.gangnan_yulu),
            ("Nehe anti-poverty insurance", self.nehe_insurance),
            ("Nehe elder-care fund", self.nehe_elder_care),
            ("Hunyuan astragalus subsidy", self.hunyuan_astragalus),
            ("Huanjiang micro-credit", self.huanjiang_credit),
            ("Nehe road hardening", self.nehe_road),
            ("Nehe cold store", self.nehe_cold_store),
            ("Huanjiang water works", self.huanjiang_water),
            ("Nehe mushrooms from 57 planting bases", self.nehe_mushrooms),
            ("Nehe red millet and soy", self.nehe_grain),
            ("Hunyuan millet, liangfen and astragalus", self.hunyuan_products),
            ("Heyuan garlic and pomelo", self.heyuan_products),
            ("anomalies", self.anomalies),
            ("finishing", self.finish),
        )
        for message, step in steps:
            self.progress(message)
            step()


def load_demo(
    instance: Instance,
    *,
    households: int | None = None,
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
) -> DemoSummary:
    """Load the demo data set into ``instance``'s log (which MUST be initialised).

    ``households`` None loads the default register (9,734 households in Gangnan, 10,400 in
    all); a number spreads that many over the five places (at least :data:`MIN_PER_PLACE`
    each) and scales every programme with them.  Idempotent: if the demo is in the log
    already, nothing changes and the summary says ``already_loaded``.  Raises
    :class:`~ledger.errors.ConfigError` for a half-loaded demo, and other
    :class:`~ledger.errors.Error` subclasses for bad arguments or storage failures.
    """
    counts = spread(households)
    say: Progress = progress or (lambda _message: None)
    log = instance.writer()
    demo_keys = [k for k in log.registered_keys() if k.name.startswith(KEY_PREFIX)]
    if demo_keys:
        first = min(k.registered_seq for k in demo_keys)
        if not any(str(e.body.get("text", "")).startswith(MARKER) for e in _notes(log, first)):
            raise ConfigError(
                f"the demo was partly loaded (its keys were registered from seq {first}) but did not "
                "finish; load it into a fresh log (a new instance folder and database)"
            )
        say("the demo data set is already loaded; nothing changed")
        return DemoSummary(True, {}, {}, 0, None, log.size())
    loader = _Loader(instance, log, seed, counts, say)
    loader.run()
    return DemoSummary(
        already_loaded=False,
        counts=dict(sorted((k, v) for k, v in loader.appended.items() if v)),
        refused=dict(sorted(loader.refused.items())),
        households=sum(counts.values()),
        first_seq=loader.first_seq,
        size=log.size(),
    )


def _plan(year: str, days: Sequence[str]) -> list[Body]:
    stages = ("approved", "tendered", "contracted", "started", "completed", "accepted", "notice")
    return [{"stage": s, "due": f"{year}-{d}"} for s, d in zip(stages, days, strict=True)]


def _shares(count: int) -> list[int]:
    """``count`` shares in permille, as equal as possible, adding up to 1000."""
    base = 1_000 // count
    return [base + (1 if i < 1_000 - base * count else 0) for i in range(count)]


def _gtin(company: str, item: str) -> str:
    """A GTIN-14 under GS1 prefix 952, which GS1 reserves for demonstrations and examples."""
    digits = f"952{company}{item}"
    return "0" + digits + gs1.gtin_check_digit(digits)


def _time(day: date, hour: int) -> str:
    return f"{day:%Y-%m-%d}T{hour:02d}:00:00+08:00"


def _notes(log: Log, after: int) -> Iterator[Entry]:
    """The log's notes after ``after``, oldest first."""
    table = schema.entries
    with log.engine.connect() as conn:
        rows = conn.execute(
            select(table.c.leaf)
            .where(table.c.kind == "note", table.c.seq > after)
            .order_by(table.c.seq)
        ).all()
    for (leaf,) in rows:
        yield decode_entry(bytes(leaf))
