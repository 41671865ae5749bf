# Each target first sets up (or reuses) the virtual environment: see scripts/env.sh.
ENV = venv="$$(scripts/env.sh)" &&

.PHONY: quickstart test bench

quickstart:  ## the main job: the quick benchmark on the synthetic stand-ins, then its leaderboard (in quickstart/)
	$(ENV) "$$venv/bin/cmh-bench" run --methods scbch,rshnl --datasets all --results quickstart/results \
	&& "$$venv/bin/cmh-bench" report --results quickstart/results --out quickstart/leaderboard

test:  ## the test suite (tiny synthetic data, CPU)
	$(ENV) "$$venv/bin/python" -m pytest -q

bench:  ## the benchmark scripts (each prints a table)
	$(ENV) for script in benchmarks/bench_*.py; do "$$venv/bin/python" "$$script"; done
