from moonshot.cli import main

main()
