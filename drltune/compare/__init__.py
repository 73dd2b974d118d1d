"""`drltune compare`: every method tuned on the same budget, then verified on the same fresh seeds.

One study per method, named `<prefix>-<method>`, in one storage (each carries the study user
attribute `compare` = prefix): the same search space for the shared knobs (the space's `space:`
and `fixed:`, only the `methods:` block narrowed to that method), the same trial and epoch budget,
sampler, pruner and seed. Then each study's best trial is trained on S fresh seeds (common to all
methods, so the comparisons are seed-paired) beside the method's published configuration, through
`drltune verify`'s machinery (runs stored as `verify:trial<N>:config:seed<S>` and
`verify:trial<N>:ref-published:seed<S>`). The leaderboard is computed from the stored runs alone:
re-running the command resumes the searches and trains only the runs not stored yet.
"""
