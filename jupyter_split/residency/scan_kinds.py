"""What the border's content scanner looks for: the built-in kinds of personal information.

PIPL's common identifiers: PRC resident ID numbers (GB 11643), mainland mobile numbers,
bank card numbers and e-mail addresses. Two regexes (NUMBERS, ADDRESSES) find candidates
in raw bytes, RE2 running them at several hundred MB/s; `number_values` and
`address_values` then keep only those that pass the checks a real value passes (check
digit, birth date, Luhn, issuer prefix, a known TLD), so that random bytes, hashes,
timestamps and floats give no findings.
"""
from __future__ import annotations

import calendar
import re
import time
from typing import Callable, NamedTuple

PRC_ID, MOBILE, CARD, EMAIL = "prc_id", "cn_mobile", "bank_card", "email"
BUILTIN = (PRC_ID, MOBILE, CARD, EMAIL)

LABELS = {
    PRC_ID: "a PRC resident ID number",
    MOBILE: "a mainland China mobile number",
    CARD: "a bank card number",
    EMAIL: "an e-mail address",
}

# Two passes find the candidates. NUMBERS: group 1 is a number of one of the shapes people
# write (18-character IDs, also as 6-8-4; mobiles, also +86 and 3-4-4; cards of 13 to 19
# digits, also in groups of 4, or 4-6-5), between a byte that is no digit (nor the point of a
# decimal: 0.13812345678 is a fraction) and a byte that is no digit, so a longer digit run, a
# float's fraction or a millisecond timestamp never reaches Python. ADDRESSES: an '@' and a
# domain (a literal first byte: the matcher skips from '@' to '@'); the local part is read
# backwards in Python. Repetitions are bounded, so Python's `re` (the fallback) stays linear,
# and leftmost-first alternation is the same in RE2 and `re`: both find the same.
_NUMBER = (
    rb"[1-8][0-9]{5}(?:19|20)[0-9]{9}[0-9Xx]"
    rb"|[1-8][0-9]{5}[ -](?:19|20)[0-9]{6}[ -][0-9]{3}[0-9Xx]"
    rb"|(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})"
    rb"|[2-6][0-9]{12,18}"
    rb"|[2-6][0-9]{3}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?"
    rb"|3[0-9]{3}[ -][0-9]{6}[ -][0-9]{4,5}"
)
# Wide text: UTF-16 or UTF-32 code units (numpy's '<U' arrays, exports without a byte order
# mark) put NULs between the digits. Eleven digits in a row, a 3-4 group or an '@' between
# letters, at either width, make group 3 of NUMBERS: the wide run around it is read narrow
# and goes through the same passes.
_WIDE = (rb"(?:[0-9]\x00){11}|(?:[0-9]\x00){3}[ -]\x00(?:[0-9]\x00){4}|[A-Za-z0-9]\x00@\x00[A-Za-z0-9]\x00"
         rb"|(?:[0-9]\x00\x00\x00){11}|(?:[0-9]\x00\x00\x00){3}[ -]\x00\x00\x00(?:[0-9]\x00\x00\x00){4}"
         rb"|[A-Za-z0-9]\x00\x00\x00@\x00\x00\x00[A-Za-z0-9]\x00\x00\x00")
# IDs back to back, as a fixed-width array ('S18', '<U18') holds them: group 2 is the first
# two; Python checks them and reads on 18 by 18 while the next is an ID too.
_IDS = rb"(?:[1-8][0-9]{5}(?:19|20)[0-9]{9}[0-9Xx]){2}"
NUMBERS = rb"(?:^|[^0-9.]|[^0-9]\.)(?:(" + _NUMBER + rb")(?:[^0-9]|$)|(" + _IDS + rb"))|(" + _WIDE + rb")"
_WIDE_RUN = {2: re.compile(rb"(?:[\x00-\xff]\x00)*"), 4: re.compile(rb"(?:[\x00-\xff]\x00\x00\x00)*")}
_WIDE_BACK = 128  # characters read before the wide match (an address's local part, a number's prefix)
ADDRESSES = rb"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,6}\.[A-Za-z]{2,24}"
_ADDRESS_AT = re.compile(ADDRESSES)
_LOCAL_MAX = 64
# The longest match a finding can come from (an address: 64 + 1 + 253): the chunked reader's
# overlap must exceed it, so that a value that spans two chunks is seen whole, once.
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
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_THIS_YEAR = time.localtime().tm_year + 1  # (+1: a process that runs past New Year)
_LUHN_DOUBLE = bytes((2 * (code - 48) - 9 * (code > 52)) if 48 <= code <= 57 else 0 for code in range(256))
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_WORD_BEFORE = re.compile(rb"[0-9A-Za-z]*\Z")
_WORD_AFTER = re.compile(rb"[0-9A-Za-z]{0,128}")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOCAL = _ALNUM | frozenset(b"._+-")
_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
_HASH_TOKEN = 16  # an all-hex word this long is a digest or an id, not a place people write numbers


class Value(NamedTuple):
    """One validated value: its kind, where it starts and ends in the buffer, its canonical form."""

    kind: str
    start: int
    end: int
    canonical: str  # (`findings.Finding` makes its masked form and hash; it never shows this)


def id_check_char(first17: str) -> str:
    """The GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits of a resident ID."""
    # The weights are 2**(17 - i) mod 11 (i = 0..16) and 13 = 2 (mod 11): the weighted sum is
    # twice the digits read in base 13, mod 11 (one C call instead of 17 multiplications).
    return "10X98765432"[2 * int(first17, 13) % 11]


def is_prc_id(value: str) -> bool:
    """18 characters: a province code, a plausible birth date, a sequence number, a valid check character."""
    if len(value) != 18 or value[:2] not in _ID_REGIONS or not value[:17].isdigit():
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not (1900 <= year <= _THIS_YEAR and 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month]):
        return False
    if month == 2 and day == 29 and not calendar.isleap(year):
        return False
    return value[17].upper() == id_check_char(value[:17])


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    codes = digits.encode()
    # every second digit from the right doubled (less 9 past 9): one table lookup per digit
    total = sum(codes[-1::-2]) - 48 * len(codes[-1::-2]) + sum(codes[-2::-2].translate(_LUHN_DOUBLE))
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


def number_values(narrow: Callable[[bytes], list[Value]], buf: bytes, spans: list[tuple[int, int]], floor: int,
                  limit: int) -> tuple[int, int, list[Value]]:
    """For a NUMBERS match: where its value begins, where to search on from, the values it really is.

    `floor`: where this search started (a wide run is not read again before it); `limit`: the
    end of the bytes read; `narrow`: the scanner's passes over narrow text, for wide text.
    """
    if spans[3][0] >= 0:
        return _wide_values(buf, spans[3][0], spans[3][1], floor, limit, narrow)
    if spans[2][0] >= 0:
        begin, end = spans[2]
        tiles = [Value(PRC_ID, at, at + 18, buf[at:at + 18].decode().upper()) for at in (begin, begin + 18)]
        if not all(is_prc_id(tile.canonical) for tile in tiles):
            return begin, end, []
        while end + 18 <= limit and is_prc_id(following := buf[end:end + 18].decode("latin-1").upper()):
            tiles.append(Value(PRC_ID, end, end + 18, following))
            end += 18
        return begin, end, tiles
    begin, end = spans[1]
    if end < len(buf) and buf[end] == 0x40 and _ADDRESS_AT.match(buf, end):
        return begin, end, []  # the local part of an address: the ADDRESSES pass reads it
    found = _number(buf, begin, end)
    if not found:  # "d6899 5454 5459 5089 8092": search again from the first separator on
        gaps = [at for at in (buf.find(b" ", begin, end), buf.find(b"-", begin, end)) if at > 0]
        end = min(gaps, default=end)
    return begin, end, found


def _wide_values(buf: bytes, begin: int, end: int, floor: int, limit: int,
                 narrow: Callable[[bytes], list[Value]]) -> tuple[int, int, list[Value]]:
    # the whole wide run from a little before the match to its end (or the end of the bytes
    # read), every `width`-th byte of it as narrow text; offsets mapped back to the bytes
    width = 4 if buf[begin + 2] == 0 else 2
    low = begin
    while low - width >= floor and begin - low < _WIDE_BACK * width and not any(buf[low - width + 1:low]):
        low -= width
    run = _WIDE_RUN[width].match(buf, end, limit)
    high = run.end() if run else end
    found = narrow(bytes(buf[low:high:width]))
    return begin, high, [value._replace(start=low + value.start * width, end=low + value.end * width)
                         for value in found]


def address_values(buf: bytes, spans: list[tuple[int, int]], floor: int = 0, limit: int = 0,
                   narrow: object = None) -> tuple[int, int, list[Value]]:
    """For an ADDRESSES match (from its '@'): the same, with the local part read backwards."""
    at, end = spans[0]
    start = at
    while start > 0 and buf[start - 1] in _LOCAL and at - start <= _LOCAL_MAX:
        start -= 1
    found = _email(buf, start, end)
    if buf[start:at].isdigit():  # 13812345678@163.com: a mobile number is the local part
        found += [value for value in _number(buf, start, at) if value.kind == MOBILE]
    return at, end, found


def _number(buf: bytes, start: int, end: int) -> list[Value]:
    if ((start and buf[start - 1] in _ALNUM) or (end < len(buf) and buf[end] in _ALNUM)) \
            and _in_hash_token(buf, start, end):
        return []
    text = buf[start:end].translate(None, b" -+").decode("ascii")
    n = len(text)  # (each kind has its lengths: one comparison turns most candidates from a check away)
    if n == 18 and is_prc_id(text):
        return [Value(PRC_ID, start, end, text.upper())]
    if n >= 13 and is_bank_card(text):  # (no issuer's prefix starts with 86 or 0086, a mobile's country code)
        return [Value(CARD, start, end, text)]
    if (n == 11 or (n == 13 and text[:2] == "86") or (n == 15 and text[:4] == "0086")) and is_mobile(text[-11:]):
        return [Value(MOBILE, start, end, text[-11:])]
    last = max(buf.rfind(b" ", start, end), buf.rfind(b"-", start, end))
    if last > start and end - last <= 4:  # "6222 0212 3456 7890 12 kg": the card without the short last group
        return _number(buf, start, last)
    return []


def _in_hash_token(buf: bytes, start: int, end: int) -> bool:
    # digits inside a long hex word (a sha256, a git id) are not a number someone wrote
    left = _WORD_BEFORE.search(buf, max(0, start - 128), start)
    right = _WORD_AFTER.match(buf, end)
    token = buf[left.start() if left else start:right.end() if right else end]
    return len(token) >= _HASH_TOKEN and not token.strip(_HEX_DIGITS)


def _email(buf: bytes, start: int, end: int) -> list[Value]:
    # What random bytes rarely spell and real addresses nearly always have: a local part of 2
    # to 64 characters (not only dots and signs), a TLD of the list in one case, a name of 2 or
    # more characters before it (3 or more before a two-letter TLD).
    if (start and buf[start - 1] in _LOCAL) or (end < len(buf) and buf[end] in _LETTERS):
        return []  # the middle of a longer word (a digit may follow: the next field of a fixed-width array)
    text = buf[start:end].decode("ascii")
    local, _, domain = text.partition("@")
    labels = domain.split(".")
    tld = labels[-1]
    if (not 2 <= len(local) <= _LOCAL_MAX or local[0] == "." or local[-1] == "." or ".." in local
            or not local.strip("._+-")):
        return []
    if tld.lower() not in _TLDS or not (tld.islower() or tld.isupper()):
        return []
    if any(label[0] == "-" or label[-1] == "-" for label in labels) or len(labels[-2]) < 2:
        return []
    if len(tld) == 2 and len(domain) - 3 < 3:
        return []  # "ab@cd.cn": too short to tell from noise
    return [Value(EMAIL, start, end, text.lower())]
