import asyncio

from downloader.server import main

asyncio.run(main())
