import asyncio

from diarizer.server import main

asyncio.run(main())
