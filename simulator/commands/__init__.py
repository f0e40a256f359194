"""Command modules of the b2bsim CLI: each has add_parser(subparsers) and run(args)."""
