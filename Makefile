.PHONY: demo test bootstrap lint

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	bash scripts/demo.sh

test: bootstrap
	bash scripts/test.sh

lint:
	.venv/bin/ruff check protocol bridge executor cod devstack tests bench && .venv/bin/mypy
