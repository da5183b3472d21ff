# Imported automatically by every Python process started with this folder on
# PYTHONPATH: the service subprocesses of the test suite.
import loopback_only

loopback_only.install()
