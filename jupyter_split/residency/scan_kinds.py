"""What the border's content scanner looks for: the built-in kinds of personal information.

PIPL's common identifiers: PRC resident ID numbers (GB 11643), mainland mobile numbers,
bank card numbers and e-mail addresses. One prefilter regex finds candidates in raw bytes
(RE2 runs it at several hundred MB/s); `validate` then keeps only those that pass the
checks a real value passes (check digit, birth date, Luhn, issuer prefix, a known TLD),
so that random bytes, hashes and floats give no findings.
"""
from __future__ import annotations

import calendar
import datetime
import hashlib
from dataclasses import dataclass

PRC_ID, MOBILE, CARD, EMAIL = "prc_id", "cn_mobile", "bank_card", "email"
BUILTIN = (PRC_ID, MOBILE, CARD, EMAIL)

LABELS = {
    PRC_ID: "a PRC resident ID number",
    MOBILE: "a mainland China mobile number",
    CARD: "a bank card number",
    EMAIL: "an e-mail address",
}

# Bounded repetitions keep Python's `re` (the fallback) linear; leftmost-first alternation
# (the same in RE2 and `re`) tries the e-mail first, so "13812345678@163.com" is an e-mail
# (whose local part `validate` still checks as a number), then a whole digit run, then the
# grouped forms people write: 138 1234 5678, 6222 0212 3456 7890, 110105 19491231 002X.
_EMAIL = rb"[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,6}\.[A-Za-z]{2,24}"
_NUMBER = (
    rb"[0-9]{11,}[Xx]?"
    rb"|(?:\+|00)?86[ -]?1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
    rb"|1[3-9][0-9][ -][0-9]{4}[ -][0-9]{4}"
    rb"|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?"
    rb"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5}"
    rb"|[0-9]{6}[ -][0-9]{8}[ -][0-9]{3}[0-9Xx]"
)
PREFILTER = _EMAIL + rb"|" + _NUMBER
# The longest candidate a finding can come from (a longer one is rejected): the chunked
# reader's overlap must exceed it so a value that spans two chunks is seen whole, once.
MAX_VALUE = 64 + 1 + 253

# Two-letter TLDs are few on purpose: random bytes spell an "x@yy.zz" often enough that a
# long list would make a gigabyte of noise report one.
_TLDS = frozenset(
    "com net org edu gov mil int info biz name pro mobi asia xyz top site online club shop vip app dev "
    "tech cloud email work ltd group team live store link "
    "cn hk mo tw sg jp kr uk us de fr io ai me co ca au".split()
)
_ID_REGIONS = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOCAL = _ALNUM | frozenset(b"._+-")
_SEPARATORS = frozenset(b" -")
_LABEL = _ALNUM | frozenset(b"-")
_HASH_TOKEN = 16  # an all-hex word this long is a digest or an id, not a place people write numbers


@dataclass(frozen=True)
class Value:
    """One validated value: its kind, where it starts and ends in the buffer, its canonical form."""

    kind: str
    start: int
    end: int
    canonical: str

    def masked(self) -> str:
        """The value with its identifying middle hidden (safe for logs)."""
        return mask(self.kind, self.canonical)

    def digest(self) -> str:
        """sha256 of the canonical value: the same number written two ways has one digest."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()


def id_check_char(first17: str) -> str:
    """The GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits of a resident ID."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS))
    return "10X98765432"[total % 11]


def is_prc_id(value: str) -> bool:
    """18 characters: a province code, a plausible birth date, a sequence number, a valid check character."""
    if len(value) != 18 or not value[:17].isdigit() or value[:2] not in _ID_REGIONS:
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not 1900 <= year <= datetime.date.today().year or not 1 <= month <= 12:
        return False
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    return value[17].upper() == id_check_char(value[:17])


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card_lengths(digits: str) -> range | tuple[int, ...]:
    # issuer prefixes (IIN) and the lengths each network issues: UnionPay, Visa, Mastercard,
    # Amex, JCB, Discover, Diners; a number with another prefix is not taken for a card
    two, four = int(digits[:2]), int(digits[:4])
    if two == 62:
        return range(16, 20)
    if digits[0] == "4":
        return (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return (16,)
    if two in (34, 37):
        return (15,)
    if 3528 <= four <= 3589 or four == 6011 or 644 <= int(digits[:3]) <= 649 or two == 65:
        return range(16, 20)
    if 300 <= int(digits[:3]) <= 305 or two in (36, 38, 39):
        return range(14, 20)
    return ()


def is_bank_card(digits: str) -> bool:
    """13 to 19 digits with a known issuer prefix, a length that issuer uses, and a valid Luhn digit."""
    return 13 <= len(digits) <= 19 and digits.isdigit() and len(digits) in _card_lengths(digits) and luhn_ok(digits)


def is_mobile(digits: str) -> bool:
    """A mainland mobile number: 1, then 3 to 9, then nine digits."""
    return len(digits) == 11 and digits.isdigit() and digits[0] == "1" and digits[1] in "3456789"


def mask(kind: str, canonical: str) -> str:
    """The masked form of a value: enough to recognise it in a report, never enough to use it."""
    if kind == PRC_ID:
        return canonical[:6] + "*" * 8 + canonical[14:]
    if kind == MOBILE:
        return canonical[:3] + "****" + canonical[7:]
    if kind == CARD:
        return canonical[:4] + "*" * (len(canonical) - 8) + canonical[-4:]
    if kind == EMAIL:
        local, _, domain = canonical.partition("@")
        return f"{local[0]}***@{domain}"
    keep = len(canonical) // 4 if len(canonical) >= 8 else 0
    return canonical[:keep] + "*" * (len(canonical) - 2 * keep) + (canonical[-keep:] if keep else "")


def validate(buf: bytes, start: int, end: int) -> list[Value]:
    """The values a prefilter candidate `buf[start:end]` really is (usually none)."""
    if buf[start:end].find(b"@") >= 0:
        return _email(buf, start, end)
    return _number(buf, start, end)


def _number(buf: bytes, start: int, end: int) -> list[Value]:
    before = buf[start - 1] if start else None
    after = buf[end] if end < len(buf) else None
    if before in _DIGITS or after in _DIGITS:
        return []  # part of a longer digit run
    raw = buf[start:end]
    grouped = any(byte in _SEPARATORS for byte in raw)
    if grouped and (_continues(buf, start - 1, -1) or _continues(buf, end, 1)):
        return []  # one group of a longer run of groups
    if before == 0x2E and start >= 2 and buf[start - 2] in _DIGITS:
        return []  # the fraction of a decimal number: 0.13812345678
    if (before in _ALNUM or after in _ALNUM) and _in_hash_token(buf, start, end):
        return []
    text = raw.decode("ascii").replace(" ", "").replace("-", "")
    prefixed = text.startswith(("+86", "0086"))
    digits = text.lstrip("+")
    if len(digits) == 18 and is_prc_id(digits):
        return [Value(PRC_ID, start, end, digits.upper())]
    if digits[-1] in "Xx":
        digits = digits[:-1]
        end -= 1
    if not prefixed and is_bank_card(digits):
        return [Value(CARD, start, end, digits)]
    for prefix in ("0086", "86", ""):
        if digits.startswith(prefix) and is_mobile(digits[len(prefix):]):
            return [Value(MOBILE, start, end, digits[len(prefix):])]
    return []


def _continues(buf: bytes, at: int, step: int) -> bool:
    # a separator at `at` with a digit beyond it: the candidate is a slice of a longer grouping
    beyond = at + step
    return 0 <= beyond < len(buf) and 0 <= at < len(buf) and buf[at] in _SEPARATORS and buf[beyond] in _DIGITS


def _in_hash_token(buf: bytes, start: int, end: int) -> bool:
    # digits inside a long hex word (a sha256, a git id) are not a number someone wrote
    left, right = start, end
    while left > 0 and buf[left - 1] in _ALNUM and start - left < 128:
        left -= 1
    while right < len(buf) and buf[right] in _ALNUM and right - end < 128:
        right += 1
    token = buf[left:right]
    return len(token) >= _HASH_TOKEN and all(byte in _HEX for byte in token)


def _email(buf: bytes, start: int, end: int) -> list[Value]:
    if (start and buf[start - 1] in _LOCAL) or (end < len(buf) and buf[end] in _LABEL):
        return []  # the middle of a longer word: not where an address starts or ends
    text = buf[start:end].decode("ascii")
    local, _, domain = text.partition("@")
    labels = domain.split(".")
    tld = labels[-1]
    if (len(local) < 2 or local[0] == "." or local[-1] == "." or ".." in local
            or not any(char.isalnum() for char in local)):
        return []
    if tld.lower() not in _TLDS or not (tld.islower() or tld.isupper()):
        return []
    if any(label[0] == "-" or label[-1] == "-" for label in labels) or len(labels[-2]) < 2:
        return []
    if len(tld) == 2 and len(domain) - 3 < 3:
        return []  # "ab@cd.cn": too short to tell from noise
    found = [Value(EMAIL, start, end, text.lower())]
    if local.isdigit():  # a mobile number as the address, as at 163.com
        found += [value for value in _number(buf, start, start + len(local)) if value.kind == MOBILE]
    return found
