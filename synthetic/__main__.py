"""`python -m synthetic`: build the embedded data set of the config (see synthetic.build.main)."""
from .build import main

if __name__ == "__main__":
    main()
