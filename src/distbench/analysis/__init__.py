"""Analysis that returns data (dataclasses), never prints or plots: ``explain.py`` is the
top-down comparison of two runs behind ``distbench explain`` and the report's summary."""
