"""PERSONA Bench: how well a model personalises (`evaluate`), and whether the dataset holds
up (`verify`, `agree`): pipelines of the engine, their statistics and their reports."""

REPORT_FORMAT = "report"  # the export format of both pipelines: their md/json/png reports
