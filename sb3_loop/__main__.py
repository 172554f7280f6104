"""``python -m sb3_loop train|enjoy|record_video|plots ...``: rl-zoo3 with our algorithms registered."""

from sb3_loop.zoo import main

if __name__ == "__main__":
    main()
