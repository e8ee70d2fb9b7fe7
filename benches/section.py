"""Put one bench's section into benches/REPORT.md: the text on stdin replaces what lies between
<!-- section:NAME --> and <!-- /section:NAME --> (appended when there is none yet). `make bench`
rewrites the rest of the report and keeps these sections (see carried())."""
import os
import re
import sys

REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "REPORT.md")
BLOCK = r"<!-- section:(\w+) -->.*?<!-- /section:\1 -->"


def carried(path=REPORT):
    """The sections already in the report, to keep when the rest is rewritten."""
    if not os.path.exists(path):
        return []
    return [m.group(0) for m in re.finditer(BLOCK, open(path).read(), re.S)]


def put(name, body, path=REPORT):
    block = f"<!-- section:{name} -->\n{body.rstrip()}\n<!-- /section:{name} -->"
    text = open(path).read() if os.path.exists(path) else "# pg_recsys benchmark report\n"
    pattern = re.compile(rf"<!-- section:{name} -->.*?<!-- /section:{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


if __name__ == "__main__":
    put(sys.argv[1], sys.stdin.read())
