import click


@click.group()
def main() -> None:
    """The pipeline command."""
