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
        cmd = [binary, 'optimize', path, '--json', '--failover', '1', '--no-lookup']
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
    # The market is part of the choice: the same machine on spot and on demand is not the same plan.
    key = ('cloud', 'instance_type', 'region', 'use_spot')
    same = all(sky[k] == cat[k] for k in key)
    # SkyPilot calls every GCP TPU VM `TPU-VM` and names the TPU as its accelerator; skycat's
    # offer is named after the TPU (`tpu-v2-8`). The same TPU in the same region is the same plan.
    if sky['instance_type'] == 'TPU-VM' and list(sky.get('accelerators') or {}) == [cat['instance_type']]:
        same = all(sky[k] == cat[k] for k in key if k != 'instance_type') and sky['accelerators'] == cat['accelerators']
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


# Why a comparison differs. Each class was checked against SkyPilot 0.14.1's source and skycat's
# optimizer (docs/skypilot-compare.md says how); a row no rule explains is `unexplained`.
REASONS = {
    'sky-assert-duplicate-az': 'SkyPilot raises AssertionError: its AWS catalog lists p4de.24xlarge twice in 5 AZs',
    'sky-drops-cpus-memory': 'SkyPilot drops `memory` on RunPod/PrimeIntellect and `cpus` and `memory` on Shadeform',
    'gcp-host-not-attachable': 'SkyPilot picks a GCP N1 host its own attachability check rejects',
    'cpu-default-families-absent': 'no instance of SkyPilot\'s default CPU families in the catalog; skycat relaxes',
    'sky-rejects-spot-recovery': 'SkyPilot 0.14.1\'s schema rejects `spot_recovery`; skycat reads it as `job_recovery`',
    'named-type-not-on-pinned-cloud': 'pinning artifact: an alternative names another cloud\'s instance type',
    'gcp-default-host-not-with-gpu': 'SkyPilot\'s default GCP host for the GPU is in no zone that has the GPU; skycat relaxes',
    'sky-default-type-has-no-region': 'SkyPilot\'s CPU-only default is an instance type the catalog lists with no region',
    'skycat-reads-alias': 'skycat reads an accelerator name SkyPilot\'s catalogs lack (`A100-40GB`) as the catalog\'s name (`A100`)',
    'tie-set-order': 'equal price: SkyPilot breaks ties among a set\'s alternatives in Python set order',
    'tie': 'equal price, tie broken differently',
    'unexplained': 'no rule explains it',
}


def load_shapes(catalog_dir):
    """From the exported catalog: (cloud, instance type) -> (vCPUs, memory GiB);
    ('regions' | 'zones', cloud, instance type) -> its regions | zones; ('gcp-gpu-zones', name,
    count) -> the zones of a GCP GPU price row; ('accelerators',) -> every accelerator name."""
    import csv
    shapes = {}
    if not catalog_dir:
        return shapes
    for cloud in sorted(os.listdir(catalog_dir)):
        path = os.path.join(catalog_dir, cloud, 'vms.csv')
        if not os.path.exists(path):
            continue
        with open(path, encoding='utf-8') as fh:
            for row in csv.DictReader(fh):
                if (row.get('AcceleratorName') or '').strip():
                    shapes.setdefault(('accelerators',), set()).add(row['AcceleratorName'].strip().lower())
                zone = (row.get('AvailabilityZone') or '').strip()
                if cloud == 'gcp' and not row['InstanceType'] and row.get('AcceleratorName'):
                    key = ('gcp-gpu-zones', row['AcceleratorName'], float(row['AcceleratorCount']))
                    shapes.setdefault(key, set()).add(zone)
                    continue
                shapes.setdefault(('zones', cloud, row['InstanceType']), set()).add(zone)
                try:
                    shapes[(cloud, row['InstanceType'])] = (float(row['vCPUs']), float(row['MemoryGiB']))
                except (KeyError, TypeError, ValueError):
                    continue
                regions = shapes.setdefault(('regions', cloud, row['InstanceType']), set())
                if (row.get('Region') or '').strip():
                    regions.add(row['Region'])
    return shapes


def _fits(want, have):
    """SkyPilot's `4` (exactly) / `4+` (at least) against a number."""
    if want is None:
        return True
    w = str(want).strip()
    if w.endswith('+'):
        return have >= float(w[:-1]) - 1e-9
    if w.endswith('x'):
        return True  # a ratio; no example task uses one
    return abs(have - float(w)) < 1e-9


def _asked(res, field):
    """The values of `field` the task's alternatives ask for (top level, any_of, ordered)."""
    res = res or {}
    entries = list(res.get('any_of') or []) + list(res.get('ordered') or [])
    top = res.get(field)
    if not entries:
        return [top]
    return [e.get(field, top) for e in entries]


def _attachable_on_gcp(choice):
    """SkyPilot's own check of a GCP host + GPU pair (None: not a GPU on a GCP host)."""
    if choice.get('cloud') != 'gcp' or not choice.get('accelerators') or not choice.get('instance_type'):
        return None
    from sky.catalog import gcp_catalog
    from sky import exceptions
    try:
        gcp_catalog.check_accelerator_attachable_to_host(
            choice['instance_type'], {k: int(v) for k, v in choice['accelerators'].items()}, choice.get('zone'))
        return True
    except exceptions.ResourcesMismatchError:
        return False


def reason(r, shapes):
    sky, cat, res = r['skypilot'], r['skycat'], r.get('resources') or {}
    if r['verdict'].startswith('equal price'):
        accs = res.get('accelerators')
        many = isinstance(accs, dict) and len(accs) > 1 or bool(res.get('any_of'))
        return 'tie-set-order' if many else 'tie'
    err = sky.get('error', '')
    if err.startswith('AssertionError') and 'InstanceType' in err and 'AvailabilityZone' in err:
        # get_hourly_cost_impl's `assert zone is None or len(df) == 1, df` prints the rows.
        return 'sky-assert-duplicate-az'
    if 'spot_recovery' in err:
        return 'sky-rejects-spot-recovery'
    if err.startswith('ValueError: No instance type') and r['infra'] != 'any':
        named = [e.get('instance_type') for e in [res] + list(res.get('ordered') or []) + list(res.get('any_of') or [])]
        if any(t and t in err for t in named):
            return 'named-type-not-on-pinned-cloud'
    pinned = r['infra']
    if pinned == 'any':
        # The task's own cloud, if all its alternatives name the same one.
        named = {str(e.get('infra') or e.get('cloud') or res.get('infra') or res.get('cloud') or '').split('/')[0]
                 for e in ([res] if not (res.get('any_of') or res.get('ordered'))
                           else list(res.get('any_of') or []) + list(res.get('ordered') or []))}
        pinned = named.pop() if len(named) == 1 else ''
    unavailable = err.startswith('ResourcesUnavailableError: Catalog does not contain any instances')
    if unavailable and 'error' not in cat and pinned and not any(_asked(res, 'accelerators')):
        # SkyPilot's default for a CPU-only task, picked before regions are looked at.
        from sky import catalog as sky_catalog
        cpus, memory = _asked(res, 'cpus')[0], _asked(res, 'memory')[0]
        default = sky_catalog.get_default_instance_type(
            cpus=None if cpus is None else str(cpus), memory=None if memory is None else str(memory), clouds=pinned)
        if default is None and any('relaxed to any' in n for n in cat.get('notes', [])):
            return 'cpu-default-families-absent'
        if default and not shapes.get(('regions', pinned, default)):
            return 'sky-default-type-has-no-region'
    if unavailable and pinned in ('gcp', '') and cat.get('cloud') == 'gcp' and cat.get('accelerators'):
        # SkyPilot's GCP host for the GPU, picked from every zone, then placed where the GPU is.
        from sky.catalog import gcp_catalog
        (name, count), = cat['accelerators'].items()
        cpus, memory = _asked(res, 'cpus')[0], _asked(res, 'memory')[0]
        hosts, _ = gcp_catalog.get_instance_type_for_accelerator(
            name, int(count), cpus=None if cpus is None else str(cpus), memory=None if memory is None else str(memory))
        gpu_zones = shapes.get(('gcp-gpu-zones', name, float(count)), set())
        if hosts and not any(shapes.get(('zones', 'gcp', h), set()) & gpu_zones for h in hosts):
            return 'gcp-default-host-not-with-gpu'
    if unavailable and cat.get('accelerators'):
        asked = set()
        for a in _asked(res, 'accelerators'):
            names = [a] if isinstance(a, str) else list(a or [])
            asked |= {str(n).split(':')[0].strip().lower() for n in names}
        chosen = next(iter(cat['accelerators'])).lower()
        # SkyPilot resolves a name to a catalog name containing it; an alias no catalog name
        # contains stays as written and matches nothing.
        known = shapes.get(('accelerators',), set())
        unresolved = {n for n in asked if n and not any(n in k for k in known)}
        if chosen not in asked and unresolved:
            return 'skycat-reads-alias'
    if 'error' not in sky:
        if _attachable_on_gcp(sky) is False:
            return 'gcp-host-not-attachable'
        shape = shapes.get((sky['cloud'], sky['instance_type']))
        dropped = {'runpod': ('memory',), 'primeintellect': ('memory',), 'shadeform': ('cpus', 'memory')}
        if shape and sky['cloud'] in dropped:
            for field in dropped[sky['cloud']]:
                have = shape[0] if field == 'cpus' else shape[1]
                if all(not _fits(w, have) for w in _asked(res, field)):
                    return 'sky-drops-cpus-memory'
    return 'unexplained'


def report(path, catalog_dir=None):
    """Markdown: counts per verdict, per reason and per cloud, then every difference grouped by
    its reason (`REASONS`). Verdicts are recomputed from the recorded choices, so a fix to
    `verdict` applies to an earlier run's results.jsonl too."""
    rows = [json.loads(line) for line in open(path, encoding='utf-8')]
    skipped = [r for r in rows if 'skipped' in r]
    runs = [r for r in rows if 'verdict' in r]
    shapes = load_shapes(catalog_dir)
    for r in runs:
        r['verdict'] = verdict(r['skypilot'], r['skycat'])
        r['reason'] = None if r['verdict'].startswith('equal') and not r['verdict'].startswith('equal price') \
            else reason(r, shapes)
    tasks = len({r['task'] for r in runs})
    print(f'{tasks} tasks ({len(skipped)} YAML files were not tasks), {len(runs)} comparisons:\n')
    counts = {}
    for r in runs:
        counts[r['verdict']] = counts.get(r['verdict'], 0) + 1
    print('| verdict | count |\n|---|---|')
    for v, n in sorted(counts.items(), key=lambda x: -x[1]):
        print(f'| {v} | {n} |')

    by_reason = {}
    for r in runs:
        if r['reason']:
            by_reason.setdefault(r['reason'], []).append(r)
    print('\n| reason | differences |\n|---|---|')
    for k in REASONS:
        if k in by_reason:
            print(f'| `{k}`: {REASONS[k]} | {len(by_reason[k])} |')

    infras = sorted({r['infra'] for r in runs}, key=lambda c: (c != 'any', c))
    print('\n| infra | equal | both infeasible | equal price | different |\n|---|---|---|---|---|')
    for c in infras:
        rs = [r for r in runs if r['infra'] == c]
        eq = sum(r['verdict'] == 'equal' for r in rs)
        both = sum(r['verdict'] == 'equal (both infeasible)' for r in rs)
        tie = sum(r['verdict'].startswith('equal price') for r in rs)
        print(f'| {c} | {eq} | {both} | {tie} | {len(rs) - eq - both - tie} |')

    def show(x):
        if 'error' in x:
            e = x['error'].replace('|', '/')
            if e.startswith('error: /') and ': infeasible' in e:
                return 'infeasible' + e.split(': infeasible', 1)[1][:110]  # skycat's, less the temp path
            return 'infeasible: ' + e[:110]
        spot = ' [spot]' if x['use_spot'] else ''
        accs = ','.join(f'{k}:{v:g}' for k, v in (x.get('accelerators') or {}).items())
        return f"{x['cloud']} {x['instance_type']}{spot} {accs} {x['region']} ${x['hourly_price']:.3f}".replace('  ', ' ')

    for k in REASONS:
        if k not in by_reason:
            continue
        print(f'\n### `{k}` ({len(by_reason[k])})\n\n{REASONS[k]}.\n')
        print('| task | infra | SkyPilot 0.14.1 | skycat |\n|---|---|---|---|')
        for r in by_reason[k]:
            print(f"| {r['task']} | {r['infra']} | {show(r['skypilot'])} | {show(r['skycat'])} |")


def drop_duplicate_aws_rows(catalog_dir):
    """SkyPilot asserts that its AWS catalog lists an instance type once per zone; the published
    one lists p4de.24xlarge twice in 5 AZs (with and without a spot price). Keep, of two, the row
    with a spot price, in CATALOG_DIR/aws/vms.csv."""
    import csv
    aws = os.path.join(catalog_dir, 'aws', 'vms.csv')
    with open(aws, encoding='utf-8') as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    key = lambda r: (r['InstanceType'], r['Region'], r['AvailabilityZone'])  # noqa: E731
    n = {}
    for r in rows:
        n[key(r)] = n.get(key(r), 0) + 1
    kept = [r for r in rows if n[key(r)] == 1 or r['SpotPrice']]
    with open(aws, 'w', newline='', encoding='utf-8') as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(kept)
    print(f'{len(rows) - len(kept)} duplicate AWS rows dropped', file=sys.stderr)


def recheck_duplicates(path, catalog_dir):
    """The `sky-assert-duplicate-az` rows again, against a copy of the catalog whose AWS file
    keeps one row per (instance type, zone): of two, the one with a spot price. Prints what
    SkyPilot picks once its assertion no longer fires, next to skycat's choice."""
    import shutil
    home = tempfile.mkdtemp(prefix='skypilot-compare-dedup-')
    cat = os.path.join(home, '.sky', 'catalogs', os.path.basename(os.path.normpath(catalog_dir)))
    shutil.copytree(catalog_dir, cat)
    drop_duplicate_aws_rows(cat)
    os.environ['HOME'] = home
    import sky  # noqa: F401
    from sky import check as sky_check
    from sky.utils import registry
    enabled = [registry.CLOUD_REGISTRY.from_str(c) for c in SKYPILOT_CLOUDS]
    sky_check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled
    table = ['| task | infra | SkyPilot 0.14.1, duplicates merged | skycat | same |', '|---|---|---|---|---|']
    for line in open(path, encoding='utf-8'):
        r = json.loads(line)
        if 'skycat' not in r or verdict(r['skypilot'], r['skycat']).startswith('equal'):
            continue
        if not r['skypilot'].get('error', '').startswith('AssertionError'):
            continue
        view = {'num_nodes': r.get('num_nodes', 1), 'resources': r['resources']}
        s = sky_plan(view)
        v = verdict(s, r['skycat'])
        show = lambda x: x.get('error', '')[:80] or (  # noqa: E731
            f"{x['cloud']} {x['instance_type']}{' [spot]' if x['use_spot'] else ''} {x['region']} ${x['hourly_price']:.3f}")
        table.append(f"| {r['task']} | {r['infra']} | {show(s)} | {show(r['skycat'])} | {v} |")
    shutil.rmtree(home, ignore_errors=True)
    # After SkyPilot's own messages, which it writes to stdout too.
    print('\n'.join(table))


def offline():
    """SkyPilot with every catalog cloud enabled and nothing asked of a provider."""
    import sky  # noqa: F401
    from sky import check as sky_check
    from sky.utils import registry
    enabled = [registry.CLOUD_REGISTRY.from_str(c) for c in SKYPILOT_CLOUDS]
    sky_check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled


def once(task_path):
    """One task, one process, as a user runs it (scripts/bench-catalog.sh times this): SkyPilot's
    plan of TASK_YAML as JSON on the last line of stdout."""
    offline()
    with open(task_path, encoding='utf-8') as fh:
        view = yaml.safe_load(fh)
    print(json.dumps(sky_plan(view)))


def show_gpus(arg):
    """`sky show-gpus NAME:COUNT`'s data, in-process: the offers of that accelerator and count."""
    offline()
    from sky import catalog
    name, _, count = arg.partition(':')
    found = catalog.list_accelerators(gpus_only=True, name_filter=name, quantity_filter=int(count or 1),
                                      clouds=SKYPILOT_CLOUDS, case_sensitive=False, all_regions=False)
    rows = sum(len(v) for v in found.values())
    print(json.dumps({'accelerators': sorted(found), 'rows': rows}))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == 'dedupe':
        return drop_duplicate_aws_rows(sys.argv[2])
    if len(sys.argv) > 2 and sys.argv[1] == 'once':
        return once(sys.argv[2])
    if len(sys.argv) > 2 and sys.argv[1] == 'show-gpus':
        return show_gpus(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == 'prepare':
        return prepare(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == 'recheck-duplicates':
        return recheck_duplicates(sys.argv[2], sys.argv[3])
    if len(sys.argv) > 1 and sys.argv[1] == 'report':
        return report(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
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
                                      'num_nodes': view.get('num_nodes', 1),
                                      'resources': view.get('resources')}) + '\n')
                out.flush()
            print(f'[{n}/{len(tasks)}] {label} ({time.time() - t0:.0f}s) {counts}', file=sys.stderr, flush=True)
    print(json.dumps({'tasks': len(tasks), 'skipped_files': len(skipped), 'verdicts': counts}, indent=1))


if __name__ == '__main__':
    main()
