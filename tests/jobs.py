"""Plain RQ jobs used by the tests."""


def write_marker(path: str) -> None:
    with open(path, "w") as f:
        f.write("fired")
