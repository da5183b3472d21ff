import asyncio

from asr.server import main

asyncio.run(main())
