"""The questions of the shipped default prompt set, grouped by topic.

The topics follow PRISM's opening-prompt clusters (Kirk et al. 2024) where those are value-laden,
split or widened so every topic has enough contested questions, and leave out the clusters with
nothing to contest (greetings, weather). The questions themselves are original to this project.

`QUESTIONS_BY_TOPIC` fixes the order of the shipped file: topics in `Topic` order, questions in
module order, ids `q0001`, `q0002`, ... assigned from that order by
`engine.persona.prompts`. Adding a
question renumbers everything after it, so append new questions to the end of the last topic
when ids must stay put.
"""

from __future__ import annotations

import enum
from typing import Final

from engine.persona.prompt_data import civic, everyday, moral, personal, world


class Topic(enum.StrEnum):
    POLITICS_ELECTIONS = "politics_elections"
    RELIGION_SPIRITUALITY = "religion_spirituality"
    RELATIONSHIPS_FAMILY = "relationships_family"
    WORK_CAREERS = "work_careers"
    HEALTH_MEDICINE = "health_medicine"
    CLIMATE_ENVIRONMENT = "climate_environment"
    IMMIGRATION = "immigration"
    ABORTION_REPRODUCTION = "abortion_reproduction"
    RACE_ETHNICITY = "race_ethnicity"
    GENDER_SEXUALITY = "gender_sexuality"
    AI_TECHNOLOGY = "ai_technology"
    LIFE_DEATH_ETHICS = "life_death_ethics"
    ECONOMY_INEQUALITY = "economy_inequality"
    WAR_INTERNATIONAL_CONFLICT = "war_international_conflict"
    CULTURE_MEDIA_SPORTS = "culture_media_sports"
    EDUCATION_PARENTING = "education_parenting"
    CRIME_JUSTICE = "crime_justice"
    GUNS = "guns"
    DRUGS_ALCOHOL = "drugs_alcohol"
    ANIMALS_PETS = "animals_pets"
    FOOD_DIET = "food_diet"
    MONEY_PERSONAL_FINANCE = "money_personal_finance"
    FREE_SPEECH = "free_speech"
    TRAVEL_TOURISM = "travel_tourism"
    HOLIDAYS_TRADITIONS = "holidays_traditions"


QUESTIONS_BY_TOPIC: Final[tuple[tuple[Topic, tuple[str, ...]], ...]] = (
    (Topic.POLITICS_ELECTIONS, civic.POLITICS_ELECTIONS),
    (Topic.RELIGION_SPIRITUALITY, world.RELIGION_SPIRITUALITY),
    (Topic.RELATIONSHIPS_FAMILY, personal.RELATIONSHIPS_FAMILY),
    (Topic.WORK_CAREERS, personal.WORK_CAREERS),
    (Topic.HEALTH_MEDICINE, personal.HEALTH_MEDICINE),
    (Topic.CLIMATE_ENVIRONMENT, world.CLIMATE_ENVIRONMENT),
    (Topic.IMMIGRATION, civic.IMMIGRATION),
    (Topic.ABORTION_REPRODUCTION, moral.ABORTION_REPRODUCTION),
    (Topic.RACE_ETHNICITY, civic.RACE_ETHNICITY),
    (Topic.GENDER_SEXUALITY, world.GENDER_SEXUALITY),
    (Topic.AI_TECHNOLOGY, world.AI_TECHNOLOGY),
    (Topic.LIFE_DEATH_ETHICS, moral.LIFE_DEATH_ETHICS),
    (Topic.ECONOMY_INEQUALITY, civic.ECONOMY_INEQUALITY),
    (Topic.WAR_INTERNATIONAL_CONFLICT, world.WAR_INTERNATIONAL_CONFLICT),
    (Topic.CULTURE_MEDIA_SPORTS, everyday.CULTURE_MEDIA_SPORTS),
    (Topic.EDUCATION_PARENTING, personal.EDUCATION_PARENTING),
    (Topic.CRIME_JUSTICE, moral.CRIME_JUSTICE),
    (Topic.GUNS, moral.GUNS),
    (Topic.DRUGS_ALCOHOL, moral.DRUGS_ALCOHOL),
    (Topic.ANIMALS_PETS, everyday.ANIMALS_PETS),
    (Topic.FOOD_DIET, everyday.FOOD_DIET),
    (Topic.MONEY_PERSONAL_FINANCE, personal.MONEY_PERSONAL_FINANCE),
    (Topic.FREE_SPEECH, civic.FREE_SPEECH),
    (Topic.TRAVEL_TOURISM, everyday.TRAVEL_TOURISM),
    (Topic.HOLIDAYS_TRADITIONS, everyday.HOLIDAYS_TRADITIONS),
)
