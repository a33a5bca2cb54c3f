"""``plughost check``: whether plugin files and configurations are loadable on a host or a
named target, and why not — static checks of the ELF file first, an optional load test in a
child process."""
