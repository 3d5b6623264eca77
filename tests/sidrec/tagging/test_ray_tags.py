"""The Ray Data actor pool over ~100 real Beauty items with a real local Ray, and its sizing."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from sidrec.embed import ResourceError
from sidrec.tagging import TagConfig, hf_lm, pool_from_paths, vllm_lm
from sidrec.tagging.ray_tags import OUTPUT_SCHEMA, plan_pool, run_pipeline


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, beauty_items):
    path = tmp_path_factory.mktemp("tags") / "items.parquet"
    pq.write_table(beauty_items, path)
    return path


def test_actor_pool_tags_every_item_from_the_pool(ray_session, catalog, beauty_items, tiny_lm):
    pool = pool_from_paths(beauty_items.column("categories").to_pylist(), levels=2)
    cfg = TagConfig(lm=hf_lm(str(tiny_lm)), levels=2, top_k=3, rows_per_call=25)
    plan = plan_pool(cfg, ray_session.cluster_resources())
    assert plan.actors == 1 and plan.cpus_per_actor == 1.0  # one CPU left for the read
    out = run_pipeline(catalog, cfg, pool, plan)
    table = out.table.sort_by("item_id")
    assert table.schema == OUTPUT_SCHEMA and table.num_rows == beauty_items.num_rows
    assert table.column("item_id").to_pylist() == sorted(beauty_items.column("item_id").to_pylist())
    paths = table.column("tags").to_pylist()
    assert all(p and p[0] in pool.names[0] for p in paths)  # level 1 (coarsest) from the pool
    assert {tuple(p[:2]) for p in paths if len(p) > 1} <= {
        tuple(pool.path(1, j)) for j in range(pool.sizes[1])
    }
    assert out.items_per_s > 0 and "TaggerActor" in out.stats


def test_plan_refuses_what_would_hang_and_names_the_fix(tiny_lm):
    lm = hf_lm(str(tiny_lm))
    with pytest.raises(ResourceError, match="no GPU .*set --num-gpus 0"):
        plan_pool(TagConfig(lm=lm, num_gpus=1), {"CPU": 2})
    with pytest.raises(ResourceError, match="lower --concurrency"):
        plan_pool(TagConfig(lm=lm, num_actors=2, cpus_per_actor=1), {"CPU": 2})
    with pytest.raises(ResourceError, match="`vllm` package.*--backend hf") as err:
        plan_pool(TagConfig(lm=vllm_lm(str(tiny_lm))), {"CPU": 8}, available=lambda name: False)
    assert "--num-gpus 1" in str(err.value)
    gpu = plan_pool(TagConfig(lm=lm, num_gpus=1), {"CPU": 16, "GPU": 4})
    assert (gpu.actors, gpu.cpus_per_actor, gpu.threads) == (4, 1.0, 1)
    cpu = plan_pool(TagConfig(lm=lm, num_actors=2), {"CPU": 2})
    assert (cpu.actors, cpu.cpus_per_actor) == (2, 0.5)
