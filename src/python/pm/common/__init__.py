"""Pieces every service shares: configuration, logging, database, HTTP problems, tokens, Kafka."""

import warnings

# Connexion imports Starlette's test client at import time, which warns about httpx: a line of noise on
# every service start that is no JSON log line and concerns only Connexion's own test helpers.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
