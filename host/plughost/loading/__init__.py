"""Loading plugins: the host, the ABI and platform checks made before a plugin runs, the
C runtime that bridges a plugin's function tables, and the Python objects of its types."""
