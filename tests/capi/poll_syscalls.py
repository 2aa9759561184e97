"""Runs poll_syscalls under strace and fails if the polling thread made a
system call between its two markers (prctl PR_SET_NAME "poll-begin" and
"poll-end"). Other threads (gRPC's) are ignored.

    poll_syscalls.py PROGRAM
"""
import os
import re
import subprocess
import sys
import tempfile


def main(program):
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "strace.log")
        # LeakSanitizer cannot work under ptrace (it stops the world with
        # it): under ASan the leak check is left to the other tests.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        run = subprocess.run(["strace", "-f", "-qq", "-o", log, program],
                             capture_output=True, text=True, timeout=120, env=env)
        if run.returncode != 0 or run.stdout != "ok\n":
            print(run.stdout, run.stderr, sep="\n")
            return 1
        lines = open(log).read().splitlines()
    begin = [i for i, l in enumerate(lines) if '"poll-begin"' in l]
    end = [i for i, l in enumerate(lines) if '"poll-end"' in l]
    if len(begin) != 1 or len(end) != 1:
        print("markers not found in the strace log")
        return 1
    pid = lines[begin[0]].split()[0]
    # Memory management is the allocator's (ASan's maps its pools), not a
    # wait: only the other calls count.
    allocator = re.compile(r"^\d+\s+(<\.\.\. )?(mmap|munmap|brk|madvise|mprotect)\b")
    inside = [l for l in lines[begin[0] + 1:end[0]]
              if l.split()[0] == pid and "<... prctl resumed>" not in l
              and not allocator.match(l)]
    if inside:
        print(f"{len(inside)} system call(s) while polling, first ones:")
        print("\n".join(inside[:20]))
        return 1
    print("no system call (but the allocator's) in 3000 polls that found nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
