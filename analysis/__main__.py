"""python3 -m analysis report RESULTS.h5 -o DIR [-k 20] [--metric M] [--hide-trivial] [--prompts 3]
python3 -m analysis trace RESULTS.h5 [RESULTS.h5 ...] -o DIR [--prompts 3]"""
import argparse
import sys

from . import report, trace_report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m analysis", description="patchsweep results: reports")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="an HTML report (index.html and PNG figures) of a results file")
    rep.add_argument("results", help="a patchsweep results file (.h5), finished or not")
    rep.add_argument("-o", "--output", required=True, help="folder to write index.html and the figures into")
    rep.add_argument("-k", type=int, default=20, help="size of the top-k tables (default 20)")
    rep.add_argument("--metric", help="which of the file's metrics to read (default the job's first)")
    rep.add_argument("--hide-trivial", action="store_true",
                     help="leave out of the top tables the residual-stream cells at positions where the base and "
                          "source inputs differ (their effect is the corruption itself)")
    rep.add_argument("--prompts", type=int, default=3, metavar="N",
                     help="how many prompts, from the first, get a section of their own (default 3; 0: none)")
    trace = sub.add_parser("trace", help="ROME's causal-tracing figures from one or more gaussian-noise results files "
                                         "(hidden state, MLP and attention windows, severed paths)")
    trace.add_argument("results", nargs="+", help="results files of causal-tracing jobs (jobs/causal_trace/)")
    trace.add_argument("-o", "--output", required=True, help="folder to write index.html and the figures into")
    trace.add_argument("--prompts", type=int, default=3, metavar="N", help="per-prompt figures for the first N (default 3)")
    args = parser.parse_args(argv)
    if args.command == "trace":
        try:
            print(trace_report(args.results, args.output, prompts=args.prompts))
        except (OSError, ValueError, KeyError) as e:
            print(f"analysis: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        index = report(args.results, args.output, k=args.k, hide_trivial=args.hide_trivial,
                       prompts=args.prompts, metric=args.metric)
    except (OSError, ValueError, KeyError) as e:
        print(f"analysis: {args.results}: {e}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
