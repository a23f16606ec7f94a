from fer_data.demo import main

main()
