"""Synthetic personas from US census microdata (PERSONA.md section 1, steps 1 and 2).

Pipeline, one module per step:
    dictionary  the PUMS data dictionary: code → label
    pums        person zips → column table of code strings, checked against the dictionary
    households  HHT / HHL / FPARC derived from co-resident persons (same SERIALNO)
    national    ACS 2022 national Data Profiles (DP02, DP05)
    margins     the raking margins as data: categories, national rows, person classifiers
    raking      iterative proportional fitting of PWGTP to the margins
    population  the above, put together: persons with raked weights
    attributes  census attributes of a person: decoded labels, N/A omitted
    procedural  Big Five, quirks, mannerisms, pastimes, beliefs (lists in `lexicon`)
    build       weighted sample → personas → JSONL + deterministic meta file
    report      marginals of the personas against ACS 2022
    cli         the `personas` subcommand
"""
