"""The `doudi` command line: run the stack, migrate, provision topics, try a case."""
