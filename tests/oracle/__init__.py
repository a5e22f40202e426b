"""The Python engine, kept under tests/ as the oracle of the compiled one
(`streams._engine`): the decision core (`core`, `rules`, `state`), a partition's loop
(`engine`) and replay (`replay`), as they ran before the engine took them over.
The engine must give the same decisions, dead letters, counts and stored states,
byte for byte (tests/unit/test_engine_oracle.py, tests/unit/test_core.py,
bench/differential.py); a rule is changed in both, on purpose, or in neither.
"""
