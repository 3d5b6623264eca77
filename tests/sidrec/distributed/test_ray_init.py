from __future__ import annotations


def test_local_ray_starts_sized_and_runs_tasks(ray_session):
    ray = ray_session
    assert ray.cluster_resources()["CPU"] == 2

    @ray.remote
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]


def test_init_ray_twice_is_a_noop(ray_session):
    from sidrec.distributed import init_ray

    before = ray_session.get_runtime_context().get_node_id()
    init_ray(num_cpus=1)
    assert ray_session.get_runtime_context().get_node_id() == before
    assert ray_session.cluster_resources()["CPU"] == 2
