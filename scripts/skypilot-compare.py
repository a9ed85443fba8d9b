#!/usr/bin/env python3
"""Compare skycat's placements with SkyPilot's own optimizer, offline, on the same catalog.

Run by scripts/skypilot-compare.sh inside a venv that has SkyPilot installed, with $HOME
pointing at a folder whose ~/.sky/catalogs/<version>/ holds the catalog skycat exported
(`skycat catalog export --format skypilot`). Not part of CI.

For every task YAML under the given folders (SkyPilot's llm/ and examples/), once with the
task's own placement ("any") and once pinned to each cloud, it plans the task's resources with
SkyPilot's optimizer (`sky.optimizer.Optimizer.optimize`, every catalog cloud enabled, no network)
and with `skycat optimize --json`, and records both choices. Only what the optimizers read is
kept (`name`, `num_nodes`, `resources` less `image_id`): file mounts, workdirs, services, envs and
boot images do not change the machine, and SkyPilot would try to read local paths for some.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

# Clouds of skycat's catalog that SkyPilot 0.14.1 has a catalog for (it has none for ovhcloud,
# scaleway, simplepod: skycat blocks those when planning "any", so both see the same offers).
SKYPILOT_CLOUDS = [
    'aws', 'azure', 'gcp', 'lambda', 'runpod', 'vast', 'cudo', 'do', 'fluidstack', 'hyperbolic',
    'mithril', 'nebius', 'oci', 'paperspace', 'primeintellect', 'seeweb', 'shadeform'
]
SKYCAT_ONLY = ['ovhcloud', 'scaleway', 'simplepod']
TASK_KEYS = {
    'name', 'workdir', 'event_callback', 'num_nodes', 'resources', 'file_mounts', 'service', 'pool',
    'setup', 'run', 'envs', 'secrets', 'managed_secrets', 'inputs', 'outputs', 'file_mounts_mapping',
    'config', 'volumes', 'volume_mounts', 'api_server_access', '_metadata'
}


def find_tasks(roots):
    """(label, document) for every YAML document that looks like a SkyPilot task."""
    out = []
    skipped = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                if not f.endswith(('.yaml', '.yml')):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(os.path.abspath(root)))
                try:
                    with open(path, encoding='utf-8') as fh:
                        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
                except Exception as e:  # noqa: BLE001 - a broken YAML is skipped, with the reason
                    skipped.append((rel, f'not YAML: {str(e).splitlines()[0]}'))
                    continue
                tasks = [d for d in docs if isinstance(d, dict) and d and set(d) <= TASK_KEYS]
                if not tasks or not any(('resources' in d or 'run' in d or 'setup' in d) for d in tasks):
                    skipped.append((rel, 'not a SkyPilot task'))
                    continue
                for i, d in enumerate(tasks):
                    if set(d) <= {'name'}:
                        continue  # a pipeline's header
                    label = rel if len(tasks) == 1 else f'{rel}#{i}'
                    out.append((label, d))
    return out, skipped


def planning_view(doc, cloud):
    """What the optimizers read, pinned to `cloud` (None: as written)."""
    view = {k: copy.deepcopy(doc[k]) for k in ('name', 'num_nodes', 'resources') if k in doc}
    res = view.get('resources') or {}
    entries = [res] + list(res.get('any_of') or []) + list(res.get('ordered') or [])
    for r in entries:
        # The boot image does not choose the machine; SkyPilot would also look docker images
        # and image tags up per cloud (skycat refuses docker images at launch).
        r.pop('image_id', None)
        if cloud is not None:
            for k in ('cloud', 'region', 'zone', 'infra'):
                r.pop(k, None)
    if cloud is not None:
        res['infra'] = cloud
    if res or 'resources' in view:
        view['resources'] = res
    return view


def sky_plan(view):
    """SkyPilot's choice: dict, or {'error': ...}."""
    import sky  # noqa: F401  (imported by main before the clock starts)
    from sky import dag as dag_lib
    from sky import optimizer
    from sky import task as task_lib
    from sky.utils import common as sky_common
    try:
        task = task_lib.Task.from_yaml_config(copy.deepcopy(view))
        with dag_lib.Dag() as dag:
            dag.add(task)
        optimizer.Optimizer.optimize(dag, minimize=sky_common.OptimizeTarget.COST, quiet=True)
        best = task.best_resources
        accs = best.accelerators or {}
        return {
            'cloud': str(best.cloud).lower(),
            'instance_type': best.instance_type,
            'region': best.region,
            'zone': best.zone,
            'use_spot': bool(best.use_spot),
            'accelerators': {k: float(v) for k, v in accs.items()},
            'hourly_price': round(best.get_cost(3600), 6),
        }
    except Exception as e:  # noqa: BLE001 - SkyPilot's verdict, kept as text
        msg = str(e).strip().splitlines()
        return {'error': f'{type(e).__name__}: {msg[0] if msg else ""}'}


def skycat_plan(binary, view, block, env):
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as fh:
        yaml.safe_dump(view, fh, sort_keys=False)
        path = fh.name
    try:
        cmd = [binary, 'optimize', path, '--json', '--failover', '1']
        for b in block:
            cmd += ['--block', b]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ['?'])[-1]
            return {'error': err}
        out = json.loads(p.stdout)
        if out.get('kind') != 'task':
            return {'error': f'planned as {out.get("kind")}'}
        c = out['chosen']
        return {
            'cloud': c['cloud'],
            'instance_type': c['instance_type'],
            'region': c['region'],
            'zone': c.get('zone'),
            'use_spot': c['use_spot'],
            'accelerators': {c['accelerator']: c['count']} if c.get('accelerator') else {},
            'hourly_price': round(c['hourly_price'], 6),
            'notes': out.get('notes', []),
        }
    finally:
        os.unlink(path)


def verdict(sky, cat):
    if 'error' in sky and 'error' in cat:
        return 'equal (both infeasible)'
    if 'error' in sky:
        return 'different: SkyPilot infeasible'
    if 'error' in cat:
        return 'different: skycat infeasible'
    same = (sky['cloud'], sky['instance_type'], sky['region']) == (cat['cloud'], cat['instance_type'], cat['region'])
    if same:
        return 'equal'
    if abs(sky['hourly_price'] - cat['hourly_price']) <= 1e-6 * max(1.0, sky['hourly_price']):
        return 'equal price (tie broken differently)'
    return 'different'


def prepare(catalog_dir):
    """SkyPilot reads `common/accelerators.csv` (accelerator name -> clouds, for name lookups)
    and `common/metadata.csv` (GPU memory) next to the per-cloud files; derive both from the
    exported catalog, so nothing is downloaded."""
    import csv
    import re
    from sky.utils import registry
    clouds_of = {}
    memory = {}
    for cloud in sorted(os.listdir(catalog_dir)):
        path = os.path.join(catalog_dir, cloud, 'vms.csv')
        if cloud == 'common' or not os.path.exists(path):
            continue
        try:
            shown = str(registry.CLOUD_REGISTRY.from_str(cloud))
        except Exception:  # noqa: BLE001 - a cloud SkyPilot does not know
            continue
        with open(path, encoding='utf-8') as fh:
            for row in csv.DictReader(fh):
                name = (row.get('AcceleratorName') or '').strip()
                if not name:
                    continue
                clouds_of.setdefault(name, set()).add(shown)
                m = re.search(r"SizeInMiB'?\"?:\s*(\d+)", row.get('GpuInfo') or '')
                if m and name not in memory:
                    memory[name] = int(m.group(1)) // 1024
    os.makedirs(os.path.join(catalog_dir, 'common'), exist_ok=True)
    with open(os.path.join(catalog_dir, 'common', 'accelerators.csv'), 'w', newline='', encoding='utf-8') as fh:
        w = csv.writer(fh)
        w.writerow(['AcceleratorName', 'Clouds'])
        for name in sorted(clouds_of):
            w.writerow([name, str(sorted(clouds_of[name]))])
    with open(os.path.join(catalog_dir, 'common', 'metadata.csv'), 'w', newline='', encoding='utf-8') as fh:
        w = csv.writer(fh)
        w.writerow(['GPU', 'MemoryGB', 'Manufacturer'])
        for name in sorted(memory):
            w.writerow([name, memory[name], 'nvidia'])
    print(f'{len(clouds_of)} accelerators, {len(memory)} with memory, in {catalog_dir}/common', file=sys.stderr)


def report(path):
    """Markdown: counts per verdict, then every difference grouped by what differs."""
    rows = [json.loads(line) for line in open(path, encoding='utf-8')]
    skipped = [r for r in rows if 'skipped' in r]
    runs = [r for r in rows if 'verdict' in r]
    counts = {}
    for r in runs:
        counts[r['verdict']] = counts.get(r['verdict'], 0) + 1
    tasks = len({r['task'] for r in runs})
    print(f'{tasks} tasks ({len(skipped)} YAML files were not tasks), {len(runs)} comparisons:\n')
    print('| verdict | count |\n|---|---|')
    for v, n in sorted(counts.items(), key=lambda x: -x[1]):
        print(f'| {v} | {n} |')
    print('\n| task | infra | resources | SkyPilot 0.14.1 | skycat |\n|---|---|---|---|---|')

    def show(x):
        if 'error' in x:
            return 'infeasible: ' + x['error'][:90].replace('|', '/')
        spot = ' [spot]' if x['use_spot'] else ''
        return f"{x['cloud']} {x['instance_type']}{spot} {x['region']} ${x['hourly_price']:.3f}"

    for r in runs:
        if r['verdict'].startswith('different'):
            res = json.dumps(r['resources'], sort_keys=True).replace('|', '/')
            print(f"| {r['task']} | {r['infra']} | `{res}` | {show(r['skypilot'])} | {show(r['skycat'])} |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == 'prepare':
        return prepare(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == 'report':
        return report(sys.argv[2])
    run()


def run():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--examples', nargs='+', required=True, help='folders of SkyPilot task YAMLs (llm/, examples/)')
    ap.add_argument('--skycat', required=True, help='the skycat binary')
    ap.add_argument('--clouds', default=','.join(SKYPILOT_CLOUDS), help='clouds to pin to, comma-separated')
    ap.add_argument('--no-any', action='store_true', help='skip the unpinned run')
    ap.add_argument('--limit', type=int, default=0, help='at most this many tasks (0: all)')
    ap.add_argument('--out', required=True, help='JSON lines, one per comparison')
    args = ap.parse_args()

    import sky  # noqa: F401 - the import alone takes seconds
    from sky import check as sky_check
    from sky.utils import registry
    clouds = [c for c in args.clouds.split(',') if c]
    enabled = [registry.CLOUD_REGISTRY.from_str(c) for c in SKYPILOT_CLOUDS]
    # Offline: every catalog cloud counts as enabled, nothing asks a provider.
    sky_check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled

    tasks, skipped = find_tasks(args.examples)
    if args.limit:
        tasks = tasks[:args.limit]
    env = dict(os.environ)
    env.setdefault('SKYCAT_HOME', tempfile.mkdtemp(prefix='skycat-compare-home-'))
    variants = ([] if args.no_any else [None]) + clouds
    counts = {}
    t0 = time.time()
    with open(args.out, 'w', encoding='utf-8') as out:
        for rel, why in skipped:
            out.write(json.dumps({'task': rel, 'skipped': why}) + '\n')
        for n, (label, doc) in enumerate(tasks, 1):
            for cloud in variants:
                view = planning_view(doc, cloud)
                try:
                    s = sky_plan(view)
                except Exception:  # noqa: BLE001
                    s = {'error': traceback.format_exc().strip().splitlines()[-1]}
                c = skycat_plan(args.skycat, view, SKYCAT_ONLY if cloud is None else [], env)
                v = verdict(s, c)
                counts[v] = counts.get(v, 0) + 1
                out.write(json.dumps({'task': label, 'infra': cloud or 'any', 'verdict': v, 'skypilot': s, 'skycat': c,
                                      'resources': view.get('resources')}) + '\n')
                out.flush()
            print(f'[{n}/{len(tasks)}] {label} ({time.time() - t0:.0f}s) {counts}', file=sys.stderr, flush=True)
    print(json.dumps({'tasks': len(tasks), 'skipped_files': len(skipped), 'verdicts': counts}, indent=1))


if __name__ == '__main__':
    main()
