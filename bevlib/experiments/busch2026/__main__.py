"""``python -m bevlib.experiments.busch2026``: Table I without a notebook (one process or torchrun)."""
from __future__ import annotations


from .fig5_fig6 import plot_fig6
from .params import Table1Params
from .runs import prepare, run_table1
from .tables import caption, table1_rows, write_protocol_tables, write_table1


def main(argv=None) -> None:
    """``python -m bevlib.experiments.busch2026 [-f params.yaml] [-p name value ...]``: Table I
    without a notebook, on one process or under ``torchrun --nproc_per_node=N`` (rank 0 writes the
    table and figures into ``output_dir``)."""
    import argparse

    import yaml

    from ...params import from_dict
    from ...train import distributed as dist

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("-f", "--params", help="a params/table1/<preset>.yaml file")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    a = ap.parse_args(argv)
    values = yaml.safe_load(open(a.params)) if a.params else {}
    values.update({k: yaml.safe_load(v) for k, v in a.param})
    p = from_dict(Table1Params, values)
    exp = prepare(p)
    runs = run_table1(exp)
    if dist.is_main():
        out = p.out_dir
        csv_path, md_path = write_table1(table1_rows(runs), out, caption(exp))
        plot_fig6(runs, out / "fig6_miou_progress.png")
        print(md_path.read_text())
        for extra in write_protocol_tables(runs, exp, out):
            print(extra.read_text())


if __name__ == "__main__":
    main()
