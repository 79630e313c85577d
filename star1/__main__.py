"""`python -m star1 …` = the `star1` command."""

from star1.cli import app

app()
