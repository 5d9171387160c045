"""Household fields derived from the persons sharing a SERIALNO (person files only).

HHT (household/family type), HHL (household language) and FPARC (family presence and age of
related children) are housing-file variables. With only person files at hand they are
rebuilt here from co-resident persons, using the housing-file codes so the dictionary's
HHT/HHL/FPARC labels decode them. Every member of a household gets the household's codes.

Rules and approximations:
- Group quarters (RELP 16/17, serial `...GQ...`) have no household: all three are blank (N/A).
- A household without a householder (RELP 00) cannot be typed: all three are blank. (Does not
  happen in the 2018 files; kept so bad input degrades instead of guessing.)
- HHT: married couple if a spouse (RELP 01) is present; otherwise a family household if any
  relative of the householder (RELP 02-10) is present, split by the householder's sex;
  otherwise nonfamily, split by sex and by living alone. An unmarried partner (RELP 13) does
  not make a family, as in the Census definition. Same-sex spouses count as married couples.
- HHL: "English only" unless some member aged 5+ speaks another language at home (LANX 1);
  then the group (codes.language_group) of the first such member in person order (SPORDER),
  which is how the ACS assigns household language as far as we know. Approximation: we
  cannot see the housing-file edits (e.g. imputed languages for vacant/allocated units).
- FPARC: only for family households (HHT 1-3; otherwise blank). Related children are
  relatives of the householder other than the spouse who are under 18 (codes.py); 1 = all
  under 5, 2 = all 5-17, 3 = both, 4 = none. Approximation: the Census excludes related
  persons under 18 who are themselves householders/spouses of a subfamily; PUMS does not say
  who heads a subfamily, so a married 17-year-old child would still count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from engine.persona.census import codes
from engine.persona.census.pums import PersonTable

BLANK: Final = ""

HHT_MARRIED: Final = "1"
HHT_FAMILY_MALE: Final = "2"
HHT_FAMILY_FEMALE: Final = "3"
HHT_ALONE_MALE: Final = "4"
HHT_NOT_ALONE_MALE: Final = "5"
HHT_ALONE_FEMALE: Final = "6"
HHT_NOT_ALONE_FEMALE: Final = "7"
FAMILY_TYPES: Final = frozenset({HHT_MARRIED, HHT_FAMILY_MALE, HHT_FAMILY_FEMALE})

FPARC_UNDER_5_ONLY: Final = "1"
FPARC_5_TO_17_ONLY: Final = "2"
FPARC_BOTH: Final = "3"
FPARC_NONE: Final = "4"

#: Columns the derivation reads.
HOUSEHOLD_COLUMNS: Final = ("SERIALNO", "SPORDER", "RELP", "SEX", "AGEP", "LANX", "LANP")


class Member(msgspec.Struct, frozen=True):
    sporder: int
    relp: str
    sex: str
    age: int
    lanx: str
    lanp: str


class HouseholdCodes(msgspec.Struct, frozen=True):
    hht: str
    hhl: str
    fparc: str


NO_HOUSEHOLD: Final = HouseholdCodes(hht=BLANK, hhl=BLANK, fparc=BLANK)


def household_type(members: Sequence[Member]) -> str:
    """HHT code of a household (members include the householder)."""
    householder = next(m for m in members if m.relp == codes.HOUSEHOLDER)
    relations = {m.relp for m in members}
    male = householder.sex == codes.MALE
    if codes.SPOUSE in relations:
        return HHT_MARRIED
    if relations & codes.RELATIVES:
        return HHT_FAMILY_MALE if male else HHT_FAMILY_FEMALE
    if len(members) == 1:
        return HHT_ALONE_MALE if male else HHT_ALONE_FEMALE
    return HHT_NOT_ALONE_MALE if male else HHT_NOT_ALONE_FEMALE


def household_language(members: Sequence[Member]) -> str:
    """HHL code: the language group of the first member who speaks a non-English language."""
    for member in sorted(members, key=lambda m: m.sporder):
        if member.lanx == codes.SPEAKS_OTHER_LANGUAGE:
            return codes.language_group(member.lanp)
    return codes.HHL_ENGLISH


def family_children(members: Sequence[Member], hht: str) -> str:
    """FPARC code: presence and ages of related children, for family households."""
    if hht not in FAMILY_TYPES:
        return BLANK
    ages = [m.age for m in members if m.relp in codes.RELATED_CHILD_RELATIONS and m.age < 18]
    young = any(age < 5 for age in ages)
    older = any(age >= 5 for age in ages)
    if young and older:
        return FPARC_BOTH
    if young:
        return FPARC_UNDER_5_ONLY
    if older:
        return FPARC_5_TO_17_ONLY
    return FPARC_NONE


def household_codes(members: Sequence[Member]) -> HouseholdCodes:
    """All three codes for one SERIALNO's members."""
    if any(m.relp in codes.GROUP_QUARTERS for m in members) or not any(
        m.relp == codes.HOUSEHOLDER for m in members
    ):
        return NO_HOUSEHOLD
    hht = household_type(members)
    return HouseholdCodes(
        hht=hht, hhl=household_language(members), fparc=family_children(members, hht)
    )


def derive_household_columns(table: PersonTable) -> dict[str, list[str]]:
    """HHT, HHL and FPARC columns aligned with `table`'s rows."""
    serials = table.column("SERIALNO")
    columns = {name: table.column(name) for name in HOUSEHOLD_COLUMNS}
    by_serial: dict[str, list[int]] = {}
    for index, serial in enumerate(serials):
        by_serial.setdefault(serial, []).append(index)
    result = {
        "HHT": [BLANK] * len(table),
        "HHL": [BLANK] * len(table),
        "FPARC": [BLANK] * len(table),
    }
    for indices in by_serial.values():
        members = [
            Member(
                sporder=int(columns["SPORDER"][i]),
                relp=columns["RELP"][i],
                sex=columns["SEX"][i],
                age=int(columns["AGEP"][i]),
                lanx=columns["LANX"][i],
                lanp=columns["LANP"][i],
            )
            for i in indices
        ]
        derived = household_codes(members)
        for i in indices:
            result["HHT"][i] = derived.hht
            result["HHL"][i] = derived.hhl
            result["FPARC"][i] = derived.fparc
    return result
