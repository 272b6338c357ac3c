//! Command-line interface: clap definitions, one file per subcommand; the only layer that prints.
