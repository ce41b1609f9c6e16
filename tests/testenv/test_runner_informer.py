"""The pod runner's informer against the stand-in's watch window: a watch from a resourceVersion
the server no longer keeps is an ERROR event (410 Expired), and the informer lists again instead
of losing what happened meanwhile."""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from testenv.kubeapi import KubeApiServer
from testenv.runner.informer import Informer


def _pod(name: str) -> Pod:
    return Pod(metadata=ObjectMeta(name=name), spec=PodSpec(containers=[Container(name="c", image="i")]))


def test_an_expired_watch_makes_the_informer_list_again_and_miss_nothing(caplog) -> None:
    with KubeApiServer(history_limit=2, history_fresh=0) as server:
        config = KubeConfig.from_dict(server.kubeconfig())
        writer = Client(config, trust_env=False)
        writer.create(_pod("before"))
        seen: list[tuple[str, str]] = []

        async def scenario() -> dict:
            client = AsyncClient(config, trust_env=False)
            informer = Informer(client, Pod, lambda kind, obj: seen.append((kind, obj.metadata.name)),
                                retry_interval=0.05)
            await informer.sync()
            # Changes while nobody watches push the informer's version out of the window.
            await asyncio.to_thread(lambda: [writer.create(_pod(f"p{i}")) for i in range(4)])
            await asyncio.to_thread(writer.delete, Pod, "before")
            task = asyncio.create_task(informer.run())
            try:
                for _ in range(200):
                    if set(informer.objects) == {("default", f"p{i}") for i in range(4)}:
                        break
                    await asyncio.sleep(0.05)
            finally:
                task.cancel()
                await client.close()
            return dict(informer.objects)

        with caplog.at_level(logging.INFO, logger="bridge.informer"):
            objects = asyncio.run(scenario())
    assert sorted(name for _, name in objects) == ["p0", "p1", "p2", "p3"]
    assert ("DELETED", "before") in seen and all(("ADDED", f"p{i}") in seen for i in range(4))
    assert any("too old resource version" in r.getMessage() and "listing again" in r.getMessage()
               for r in caplog.records)
