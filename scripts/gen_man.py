#!/usr/bin/env python3
"""Man pages for vdkit from docs/cli.md, their one source.

Usage: gen_man.py CLI_MD OUTDIR VERSION

Writes OUTDIR/vdkit.1 (the whole of docs/cli.md: commands, notes, exit
codes) and OUTDIR/vdkit-COMMAND.1 for every row of the command table
(synopsis and description), in man(7) roff. Standard library only, so the
build needs nothing beyond python3 (already required by the tests).
"""
import datetime
import os
import re
import sys


def roff_text(md):
    """Inline markdown (code spans, bold, links) to roff, escaped."""
    out = []
    for part in re.split(r"(`[^`]*`|\*\*[^*]+\*\*)", md):
        if not part:
            continue
        if part.startswith("`") and part.endswith("`"):
            out.append("\\fB" + esc(part[1:-1]) + "\\fR")
        elif part.startswith("**"):
            out.append("\\fB" + esc(part[2:-2]) + "\\fR")
        else:
            out.append(esc(part))
    return "".join(out)


def esc(s):
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return s


def para(text):
    """A roff paragraph; a line starting with . or ' is protected."""
    text = roff_text(" ".join(text.split()))
    return ".PP\n" + ("\\&" + text if text[:1] in ".'" else text) + "\n"


def header(name, title, version):
    # Reproducible: SOURCE_DATE_EPOCH when set, else no date.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d") if epoch else ""
    return (f'.TH {name.upper()} 1 "{date}" "vdkit {version}" "vdkit manual"\n'
            f".SH NAME\n{esc(name)} \\- {esc(title)}\n")


def split_row(line):
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    return [c.replace("\\|", "|") for c in cells]


def main():
    src, outdir, version = sys.argv[1:4]
    lines = open(src, encoding="utf-8").read().splitlines()
    intro, notes, exit_rows, commands = [], [], [], []
    section = "intro"
    buf = []

    def flush():
        if buf:
            (intro if section == "intro" else notes if section == "notes" else []).append(" ".join(buf))
            buf.clear()

    for line in lines:
        if line.startswith("# "):
            continue
        if line.startswith("## Exit codes"):
            flush()
            section = "exit"
            continue
        if line.startswith("| command |") or line.startswith("|---") or line.startswith("| code |"):
            continue
        if line.startswith("|"):
            cells = split_row(line)
            if section == "exit":
                exit_rows.append(cells)
            elif len(cells) >= 2 and cells[0].startswith("`vdkit "):
                flush()
                commands.append(cells)
                section = "notes"
            continue
        if not line.strip():
            flush()
            continue
        if section == "exit" and not exit_rows:
            continue
        if section == "exit":
            section = "exit-notes"
        buf.append(line)
        if section == "exit-notes":
            section = "notes"
    flush()

    os.makedirs(outdir, exist_ok=True)
    main_page = [header("vdkit", "inspect, create, convert and compare virtual disk images", version)]
    main_page.append(".SH SYNOPSIS\n\\fBvdkit\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] \\fIARGS\\fR\n")
    main_page.append(".SH DESCRIPTION\n")
    main_page += [para(p) for p in intro]
    main_page.append(".SH COMMANDS\n")
    names = []
    for usage, what in commands:
        name = usage.strip("`").split()[1]
        names.append(name)
        main_page.append(".TP\n" + roff_text(usage) + "\n" + roff_text(what) + "\n")
        title = re.split(r"[;:(]", re.sub(r"`", "", what))[0].strip()[:70] or f"vdkit {name}"
        page = [header(f"vdkit-{name}", title, version)]
        page.append(".SH SYNOPSIS\n" + roff_text(usage) + "\n")
        page.append(".SH DESCRIPTION\n" + para(what))
        page.append(".PP\n\\fBvdkit help " + esc(name) + "\\fR lists every option of the installed binary.\n")
        page.append(".SH SEE ALSO\n\\fBvdkit\\fR(1)\n")
        open(os.path.join(outdir, f"vdkit-{name}.1"), "w", encoding="utf-8").write("".join(page))
    main_page.append(".SH NOTES\n")
    main_page += [para(p) for p in notes]
    main_page.append(".SH EXIT STATUS\n")
    for row in exit_rows:
        if len(row) >= 2:
            main_page.append(".TP\n" + roff_text(row[0]) + "\n" + roff_text(row[1]) + "\n")
    main_page.append(".SH SEE ALSO\n" + ", ".join(f"\\fBvdkit\\-{esc(n)}\\fR(1)" for n in names) + "\n")
    open(os.path.join(outdir, "vdkit.1"), "w", encoding="utf-8").write("".join(main_page))


main()
