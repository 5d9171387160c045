"""Groupings of 2018 PUMS codes that the rest of the package relies on (policy as data).

Checked against PUMS_Data_Dictionary_2018.csv. Codes are zero-padded strings as in the files;
the empty string is a blank field (the dictionary's `b`).
"""

from __future__ import annotations

from typing import Final

# RELP (2018; 2019+ files use RELSHIPP instead).
HOUSEHOLDER: Final = "00"
SPOUSE: Final = "01"
UNMARRIED_PARTNER: Final = "13"
#: Related to the householder by birth, marriage or adoption: spouse, children (biological,
#: adopted, step), siblings, parents, grandchildren, parents-in-law, children-in-law, other
#: relatives. A household with any of these is a family household.
RELATIVES: Final = frozenset({"01", "02", "03", "04", "05", "06", "07", "08", "09", "10"})
#: "Related children" in the Census sense: relatives of the householder other than the spouse,
#: when under 18 (own children, grandchildren, siblings, other relatives; foster children,
#: RELP 14, are not related).
RELATED_CHILD_RELATIONS: Final = RELATIVES - {SPOUSE}
#: Group quarters residents (institutional / non-institutional): no household.
GROUP_QUARTERS: Final = frozenset({"16", "17"})

# SEX
MALE: Final = "1"
FEMALE: Final = "2"

# ESR: employed civilians and armed forces, at work or with a job but not at work.
EMPLOYED: Final = frozenset({"1", "2", "4", "5"})
NOT_IN_LABOR_FORCE: Final = "6"

# COW: self-employed (not incorporated / incorporated).
SELF_EMPLOYED: Final = frozenset({"6", "7"})

# LANX
SPEAKS_OTHER_LANGUAGE: Final = "1"
SPEAKS_ONLY_ENGLISH: Final = "2"

# HISP: 01 is "Not Spanish/Hispanic/Latino"; every other code is a Hispanic origin.
NOT_HISPANIC: Final = "01"

# HHL codes (housing-file variable, derived here from persons).
HHL_ENGLISH: Final = "1"
HHL_SPANISH: Final = "2"
HHL_INDO_EUROPEAN: Final = "3"
HHL_ASIAN_PACIFIC: Final = "4"
HHL_OTHER: Final = "5"

#: LANP (2016+ ISO 639-3 based codes) → the ACS four language groups, as inclusive code ranges
#: tried in order. Spanish is 1200 alone. 1000-1564 are Indo-European languages and the
#: English- and French-based creoles; 1730-3600 are the Dravidian languages of India and the
#: languages of East and Southeast Asia and the Pacific. Everything else (Finnish, Hungarian,
#: Turkish, Mongolian at 1565-1690; Semitic, African and Native American languages from 4500;
#: 9999 unspecified) is "Other". Approximation: the Census Bureau's own grouping of a few small
#: languages (Turkish, Mongolian) may differ; they are rare in these files.
LANGUAGE_GROUP_RANGES: Final[tuple[tuple[int, int, str], ...]] = (
    (1200, 1200, HHL_SPANISH),
    (1000, 1564, HHL_INDO_EUROPEAN),
    (1730, 3600, HHL_ASIAN_PACIFIC),
)


def language_group(lanp: str) -> str:
    """The HHL-style group code of a LANP language code (non-numeric codes count as Other)."""
    try:
        number = int(lanp)
    except ValueError:
        return HHL_OTHER
    for low, high, group in LANGUAGE_GROUP_RANGES:
        if low <= number <= high:
            return group
    return HHL_OTHER
