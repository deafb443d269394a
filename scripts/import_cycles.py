#!/usr/bin/env python3
"""Import circles between the modules of each crate: a module's `crate::NAME` references
outside its tests, and the strongly connected groups of that graph (issue 17's check that
the library's modules import one another one way). Prints each crate and its circles."""
import re, os, sys, itertools
root=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'crates')
for crate in sorted(os.listdir(root)):
    src=f'{root}/{crate}/src'
    if not os.path.isdir(src): continue
    mods={f[:-3] for f in os.listdir(src) if f.endswith('.rs')} - {'lib','main'}
    edges={}
    for m in mods:
        s=open(f'{src}/{m}.rs').read()
        i=s.find('#[cfg(test)]\nmod tests')
        if i>=0: s=s[:i]
        deps=set()
        for x in re.findall(r'crate::(\w+)', s):
            if x in mods and x!=m: deps.add(x)
        # use crate::{a, b}
        for grp in re.findall(r'use crate::\{([^}]*)\}', s):
            for x in re.findall(r'\b(\w+)', grp):
                if x in mods and x!=m: deps.add(x)
        edges[m]=deps
    # find cycles via DFS (strongly connected components)
    index={}; low={}; st=[]; on=set(); res=[]; c=[0]
    def sc(v):
        index[v]=low[v]=c[0]; c[0]+=1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: sc(w); low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=st.pop(); on.discard(w); comp.append(w)
                if w==v: break
            if len(comp)>1: res.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index: sc(v)
    print(crate, res if res else 'no cycles')
    for comp in res:
        for a in comp:
            print('   ', a, '->', sorted(edges[a] & set(comp)))
