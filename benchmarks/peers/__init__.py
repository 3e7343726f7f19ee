"""The servers benchmarks/serving.py sets beside opml's endpoint: do-nothing apps on several stacks, and peers.

launch.py starts and stops them; the other modules are what they load (run as scripts or imported by the servers).
"""
