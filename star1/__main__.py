"""`python -m star1 …` = the `star1` command."""

from star1.cli import app

if __name__ == "__main__":  # vLLM engines spawn processes that re-import the main module
    app()
