"""One module per command family; each exposes COMMANDS, which `drltune.cli` registers."""
