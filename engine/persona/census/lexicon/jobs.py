"""Typical duties by occupation group (the OCCP label prefix), for the procedural job description.

A placeholder until the LLM enrichment stage writes detailed job descriptions: a duty phrase
(third person, lower case, no final period) drawn from the occupation's group.
"""

from __future__ import annotations

from typing import Final

DUTIES_BY_GROUP: Final[dict[str, tuple[str, ...]]] = {
    "MGR": (
        "plans budgets, sets priorities and keeps a team on schedule",
        "oversees daily operations and reports results to leadership",
        "hires and coaches staff and settles problems that reach their desk",
    ),
    "BUS": (
        "analyzes processes and recommends ways to save time and money",
        "coordinates contracts, vendors and paperwork for the organization",
        "prepares reports and meets with clients to review the numbers",
    ),
    "FIN": (
        "reconciles accounts and prepares financial statements",
        "reviews loans, budgets or tax filings for accuracy",
        "advises clients on money decisions and keeps careful records",
    ),
    "CMM": (
        "writes and tests software and fixes bugs reported by users",
        "keeps computer systems and networks running and secure",
        "analyzes data and builds reports and dashboards",
    ),
    "ENG": (
        "designs and tests technical systems and signs off on drawings",
        "solves engineering problems on projects from plan to finish",
        "inspects equipment and prepares technical documentation",
    ),
    "SCI": (
        "runs experiments and records careful measurements",
        "collects field samples and analyzes them in the lab",
        "studies data and writes up findings for reports",
    ),
    "CMS": (
        "counsels people through difficult situations and connects them to services",
        "manages a caseload of clients and follows up on their progress",
        "organizes community programs and outreach",
    ),
    "LGL": (
        "researches cases and drafts legal documents",
        "advises clients and represents them in negotiations and hearings",
        "keeps case files organized and meets court deadlines",
    ),
    "EDU": (
        "plans lessons, teaches classes and grades student work",
        "supports students one on one and keeps in touch with families",
        "prepares course materials and tracks student progress",
    ),
    "ENT": (
        "creates designs, media or performances for clients and audiences",
        "writes, edits or produces content on tight deadlines",
        "coaches or competes and spends long hours practicing",
    ),
    "MED": (
        "examines and treats patients and keeps their charts up to date",
        "works shifts caring for patients and coordinating with the care team",
        "runs tests or procedures and explains results to patients",
    ),
    "HLS": (
        "helps patients with daily care, meals and mobility",
        "assists clinicians and prepares rooms and equipment",
        "provides home care visits and keeps families informed",
    ),
    "PRT": (
        "patrols, responds to calls and writes incident reports",
        "protects people and property and handles emergencies",
        "monitors security and enforces rules on site",
    ),
    "EAT": (
        "prepares food during busy rushes and keeps the kitchen clean",
        "takes orders, serves customers and handles payments",
        "runs a shift in the kitchen or dining room and trains new staff",
    ),
    "CLN": (
        "cleans and maintains buildings and grounds",
        "keeps landscapes, lawns and outdoor spaces in shape",
        "handles repairs and upkeep so facilities run smoothly",
    ),
    "PRS": (
        "looks after clients' personal needs, from care to grooming",
        "cares for children or elderly people and plans their day",
        "helps customers and keeps the space welcoming",
    ),
    "SAL": (
        "helps customers find what they need and rings up sales",
        "meets sales targets by building relationships with clients",
        "stocks shelves, handles returns and keeps the floor organized",
    ),
    "OFF": (
        "answers phones and email, schedules appointments and files records",
        "processes orders, invoices and data entry",
        "keeps the office running and helps customers with questions",
    ),
    "FFF": (
        "works long days with crops or livestock, depending on the season",
        "operates farm equipment and tends animals",
        "works outdoors in forestry or fishing in all weather",
    ),
    "CON": (
        "builds and repairs structures on construction sites",
        "reads plans, measures and installs materials to code",
        "works outdoors with a crew and heavy tools",
    ),
    "EXT": (
        "operates drilling or mining equipment at remote sites",
        "works extraction shifts with strict safety rules",
        "maintains and monitors equipment in the field",
    ),
    "RPR": (
        "diagnoses and repairs machines, vehicles or equipment",
        "performs scheduled maintenance and keeps service logs",
        "troubleshoots electrical and mechanical problems",
    ),
    "PRD": (
        "operates production machinery and checks output for quality",
        "assembles products on a line and meets daily quotas",
        "sets up equipment and keeps the production floor safe",
    ),
    "TRN": (
        "drives routes, loads and unloads and keeps delivery logs",
        "moves goods in a warehouse and operates forklifts",
        "transports passengers or freight on a tight schedule",
    ),
    "MIL": (
        "serves in the armed forces, training and carrying out assigned missions",
        "maintains equipment and readiness with a military unit",
        "follows a structured schedule of duty, drills and training",
    ),
}

#: When the OCCP label has no group prefix (two 2018 labels lack one).
GENERIC_DUTIES: Final = (
    "handles the day-to-day tasks of the job with care",
    "works with coworkers to get the job done on time",
)
