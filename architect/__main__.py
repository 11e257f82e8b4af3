from architect.cli import main

main(prog_name="architect")
