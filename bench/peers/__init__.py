"""Peers for `python -m bench --peers`: nginx and LiteLLM on the same fake upstream.

They put the proxy's figures in context: nginx is the floor (a reverse proxy that only
forwards bytes), LiteLLM the Python gateway the issue compares against. Both are installed
on demand outside the project's venv (bench/peers/install.py) and run as processes of
their own, stopped by PID like every other child of the bench.
"""
