from opml.cli import run

run()
