import Launcher
Swiftrun.main()
