"""Ideology, political views (party identification) and religion, as weighted tables."""

from __future__ import annotations

from typing import Final

#: Ideology by age band (lower bound of the band → weights). Loosely after Gallup's 2022
#: ideology self-identification (about 36 % conservative, 35-37 % moderate, 25 % liberal,
#: younger adults more liberal), with a small libertarian group.
IDEOLOGIES: Final = (
    "Very liberal",
    "Liberal",
    "Moderate",
    "Conservative",
    "Very conservative",
    "Libertarian",
)
IDEOLOGY_WEIGHTS_BY_AGE: Final[tuple[tuple[int, tuple[float, ...]], ...]] = (
    (18, (0.10, 0.24, 0.38, 0.19, 0.06, 0.03)),
    (30, (0.08, 0.20, 0.37, 0.24, 0.08, 0.03)),
    (50, (0.06, 0.17, 0.36, 0.28, 0.11, 0.02)),
    (65, (0.05, 0.16, 0.34, 0.30, 0.13, 0.02)),
)

#: Political views (party identification or lean) given the ideology. Roughly follows the
#: pattern of Gallup/Pew party ID by ideology; "Independent" is the largest group overall.
DEMOCRAT = "Democrat"
REPUBLICAN = "Republican"
INDEPENDENT = "Independent"
LEANS_DEMOCRAT = "Independent, leans Democrat"
LEANS_REPUBLICAN = "Independent, leans Republican"
LIBERTARIAN_PARTY = "Libertarian Party"
GREEN_PARTY = "Green Party"
DISENGAGED = "No party preference, rarely follows politics"

PARTY_BY_IDEOLOGY: Final[dict[str, dict[str, float]]] = {
    "Very liberal": {
        DEMOCRAT: 62,
        LEANS_DEMOCRAT: 24,
        INDEPENDENT: 6,
        GREEN_PARTY: 6,
        DISENGAGED: 2,
    },
    "Liberal": {
        DEMOCRAT: 55,
        LEANS_DEMOCRAT: 27,
        INDEPENDENT: 10,
        REPUBLICAN: 3,
        GREEN_PARTY: 2,
        DISENGAGED: 3,
    },
    "Moderate": {
        DEMOCRAT: 22,
        REPUBLICAN: 18,
        INDEPENDENT: 27,
        LEANS_DEMOCRAT: 12,
        LEANS_REPUBLICAN: 11,
        DISENGAGED: 10,
    },
    "Conservative": {
        REPUBLICAN: 55,
        LEANS_REPUBLICAN: 26,
        INDEPENDENT: 9,
        DEMOCRAT: 5,
        LIBERTARIAN_PARTY: 2,
        DISENGAGED: 3,
    },
    "Very conservative": {
        REPUBLICAN: 68,
        LEANS_REPUBLICAN: 22,
        INDEPENDENT: 5,
        LIBERTARIAN_PARTY: 2,
        DEMOCRAT: 2,
        DISENGAGED: 1,
    },
    "Libertarian": {
        LIBERTARIAN_PARTY: 30,
        INDEPENDENT: 30,
        LEANS_REPUBLICAN: 20,
        REPUBLICAN: 12,
        LEANS_DEMOCRAT: 5,
        DEMOCRAT: 3,
    },
}

#: Religion weights (percent, rounded) by race/Hispanic-origin group, loosely after the Pew
#: Religious Landscape Study. Children get a religion too (their household's, in practice).
EVANGELICAL = "Evangelical Protestant"
MAINLINE = "Mainline Protestant"
BLACK_PROTESTANT = "Historically Black Protestant"
CATHOLIC = "Catholic"
LATTER_DAY_SAINT = "Latter-day Saint (Mormon)"
ORTHODOX = "Orthodox Christian"
JEHOVAHS_WITNESS = "Jehovah's Witness"
JEWISH = "Jewish"
MUSLIM = "Muslim"
BUDDHIST = "Buddhist"
HINDU = "Hindu"
OTHER_FAITH = "Other faith"
ATHEIST = "Atheist"
AGNOSTIC = "Agnostic"
NOTHING_IN_PARTICULAR = "Nothing in particular"

RELIGIONS: Final = (
    EVANGELICAL,
    MAINLINE,
    BLACK_PROTESTANT,
    CATHOLIC,
    LATTER_DAY_SAINT,
    ORTHODOX,
    JEHOVAHS_WITNESS,
    JEWISH,
    MUSLIM,
    BUDDHIST,
    HINDU,
    OTHER_FAITH,
    ATHEIST,
    AGNOSTIC,
    NOTHING_IN_PARTICULAR,
)
UNAFFILIATED: Final = frozenset({ATHEIST, AGNOSTIC, NOTHING_IN_PARTICULAR})

#: Groups: "hispanic" (any race), then non-Hispanic "white", "black", "asian", "other".
#: Columns follow RELIGIONS.
RELIGION_WEIGHTS: Final[dict[str, tuple[float, ...]]] = {
    "white": (29, 19, 0.2, 19, 2, 0.5, 0.5, 3, 0.3, 0.6, 0.1, 1.5, 4, 5, 15),
    "black": (14, 4, 53, 5, 0.5, 0.2, 2, 0.5, 2, 0.2, 0.1, 2, 1, 1, 16),
    "hispanic": (19, 5, 0.5, 48, 1, 0.3, 2, 0.5, 0.2, 0.3, 0.1, 1.5, 2, 3, 15),
    "asian": (11, 5, 0.2, 17, 1, 0.4, 0.5, 0.5, 6, 11, 15, 2, 5, 6, 19),
    "other": (25, 12, 4, 18, 3, 0.5, 1, 1, 1, 1.5, 0.5, 4, 3, 5, 21),
}
#: Multiplier on the unaffiliated shares by age band (lower bound): younger adults are much
#: more often unaffiliated; children keep the group's base shares.
UNAFFILIATED_FACTOR_BY_AGE: Final[tuple[tuple[int, float], ...]] = (
    (0, 1.0),
    (18, 1.5),
    (30, 1.15),
    (50, 0.85),
    (65, 0.6),
)
