from spanza.cli import main

raise SystemExit(main())
