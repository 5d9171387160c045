"""PERSONA Bench: how well a model personalises (`evaluate`), and whether the dataset holds
up (`verify`, `agree`): pipelines of the engine, their statistics and their reports."""
