"""The human verification study (paper section 4.2, appendix D): raters role-play a persona and
pick which of two answers it would prefer; their majority is compared with the models' `verify`
labels.

    design.py   drawing the items and seats from a finished PERSONA run; `study create`
    store.py    the study folder's SQLite file (items, seats, answers): the one place of SQL
    web.py      `study serve`: the rater and organiser pages (aiohttp, jinja2 templates)
    tally.py    majority labels, ties, per-rater labels; Fleiss' kappa; `study export`
    report.py   `study report`: Fleiss' kappa among raters, Cohen's kappa per model (md + png)
    cli.py      the `study` command and its subcommands
"""
