"""Entry point: ``python -m polyflow._worker``."""

from polyflow._worker.main import main

if __name__ == "__main__":
    main()
